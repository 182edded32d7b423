// The peaks MFU is reported against (trainer/perf.h).
#include "trainer/perf.h"

#include <gtest/gtest.h>

namespace cst::trainer {
namespace {

TEST(DatasheetPeak, KnowsTheCardsByTheirCudaNames) {
  // Names as torch reports them (cudaDeviceProp::name); the dense BF16 figures of the datasheets.
  EXPECT_DOUBLE_EQ(datasheet_bf16_peak("NVIDIA H100 80GB HBM3").flops_per_s, 989.4e12);
  EXPECT_EQ(datasheet_bf16_peak("NVIDIA H100 80GB HBM3").card, "H100 SXM5");
  EXPECT_DOUBLE_EQ(datasheet_bf16_peak("NVIDIA H100 PCIe").flops_per_s, 756.5e12);
  EXPECT_DOUBLE_EQ(datasheet_bf16_peak("NVIDIA H100 NVL").flops_per_s, 835.5e12);
  EXPECT_EQ(datasheet_bf16_peak("NVIDIA H200").card, "H200 SXM");
  EXPECT_EQ(datasheet_bf16_peak("NVIDIA GH200 480GB").card, "GH200");
  EXPECT_EQ(datasheet_bf16_peak("NVIDIA A100-SXM4-80GB").card, "A100");
}

TEST(DatasheetPeak, UnknownDevicesHaveNone) {
  EXPECT_EQ(datasheet_bf16_peak("cpu (2 threads)").flops_per_s, 0);
  EXPECT_EQ(datasheet_bf16_peak("").card, "");
}

}  // namespace
}  // namespace cst::trainer
