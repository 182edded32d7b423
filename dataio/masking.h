// Dynamic MLM masking (BERT's 80/10/10 rule), a pure function of (seed, epoch, sample index):
// identical on resume and on every world size.
//
// For each position t with attention_mask[t] == 1 and a non-special token (see
// SpecialTokens::is_special), with key = mix(mix(seed, epoch), sample_index):
//   predicted  iff unit(counter_hash(key, 3t))     < prob          (Bernoulli, 15% by default)
//   then       u = unit(counter_hash(key, 3t + 1)):
//              u < mask_frac                -> input_ids[t] = special.mask   (80%)
//              u < mask_frac + random_frac  -> a random non-special id       (10%),
//                                              drawn from counter_hash(key, 3t + 2) onwards
//              otherwise                    -> kept                          (10%)
//   labels[t] = the original id where predicted, -100 elsewhere.
#pragma once

#include <cstdint>

#include "dataio/format.h"

namespace cst::dataio {

struct MaskingOptions {
  double prob = 0.15;        // fraction of non-special tokens predicted
  double mask_frac = 0.8;    // of those, replaced by [MASK]
  double random_frac = 0.1;  // of those, replaced by a random token (the rest are kept)
  void validate() const;     // throws cst::Error on values outside [0, 1] or sums > 1
};

// Masks one row of `len` tokens in place. input_ids, attention_mask and labels: [len].
// special.mask must be >= 0 and vocab_size must exceed the number of special ids.
void apply_mlm_masking(int32_t* input_ids, const uint8_t* attention_mask, int32_t* labels, int64_t len,
                       const SpecialTokens& special, int64_t vocab_size, const MaskingOptions& opt, uint64_t seed,
                       int64_t epoch, int64_t sample_index);

}  // namespace cst::dataio
