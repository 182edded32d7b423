#include "trainer/run_context.h"

#include <ATen/Context.h>

namespace cst::trainer {

at::Generator RunContext::cuda_generator() const {
  return device.is_cuda() ? at::globalContext().defaultGenerator(device) : at::Generator();
}

}  // namespace cst::trainer
