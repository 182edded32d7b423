#include "dataio/masking.h"

#include "common/error.h"
#include "dataio/rng.h"

namespace cst::dataio {

void MaskingOptions::validate() const {
  CST_CHECK(prob >= 0 && prob <= 1, "masking prob " << prob << " outside [0, 1]");
  CST_CHECK(mask_frac >= 0 && random_frac >= 0 && mask_frac + random_frac <= 1,
            "masking fractions mask " << mask_frac << " + random " << random_frac << " must be in [0, 1]");
}

void apply_mlm_masking(int32_t* input_ids, const uint8_t* attention_mask, int32_t* labels, int64_t len,
                       const SpecialTokens& special, int64_t vocab_size, const MaskingOptions& opt, uint64_t seed,
                       int64_t epoch, int64_t sample_index) {
  CST_INPUT_CHECK(special.mask >= 0, "dynamic MLM masking needs a [MASK] token, the shards have none");
  CST_CHECK(vocab_size > 4, "vocab_size " << vocab_size << " too small for masking");
  const uint64_t key = mix(mix(seed, static_cast<uint64_t>(epoch)), static_cast<uint64_t>(sample_index));
  for (int64_t t = 0; t < len; ++t) {
    labels[t] = -100;
    if (!attention_mask[t] || special.is_special(input_ids[t])) continue;
    const uint64_t c = 3 * static_cast<uint64_t>(t);
    if (unit(counter_hash(key, c)) >= opt.prob) continue;
    labels[t] = input_ids[t];
    const double u = unit(counter_hash(key, c + 1));
    if (u < opt.mask_frac) {
      input_ids[t] = special.mask;
    } else if (u < opt.mask_frac + opt.random_frac) {
      int32_t r;
      uint64_t draw = c + 2;
      do {  // rejection of special ids: at most 4 of vocab_size > 4 ids, terminates quickly
        r = static_cast<int32_t>(counter_hash(key, draw) % static_cast<uint64_t>(vocab_size));
        draw += 3 * static_cast<uint64_t>(len);  // a stream position no other token uses
      } while (special.is_special(r));
      input_ids[t] = r;
    }
  }
}

}  // namespace cst::dataio
