// N:M keep-mask selection over contiguous groups, one pass, no temporaries.
//
// Built on first use by pgfsparse/sparsity/kernel.py (a plain shared library called through
// ctypes: no Python headers, no torch headers). `bits` holds the raw bits of the weight
// (float32 as uint32, bfloat16/float16 as uint16); with the sign bit cleared they order
// exactly as |w| (NaN above inf, -0.0 equal to +0.0), as in masks.py.
//
// Inside a group of m the n largest are kept; among equal magnitudes the lowest index wins.
//   n == 1      the first maximum;
//   n == m - 1  all but the last minimum;
//   otherwise   element i is kept when fewer than n elements beat it, where j beats i if
//               |w_j| > |w_i|, or |w_j| == |w_i| and j < i (a branch-free count that the
//               compiler vectorises); above kMaxCountM a selection (nth_element) on unique keys.
#include <algorithm>
#include <cstdint>
#include <functional>
#include <limits>
#include <vector>

namespace {

constexpr int64_t kMaxCountM = 64;

// mag, keys, order: per-thread scratch of m entries each.
template <typename Bits>
void select_group(const Bits* row, uint8_t* keep, int64_t m, int64_t n, int32_t* mag, int64_t* keys, int64_t* order) {
  const Bits magnitude = static_cast<Bits>(std::numeric_limits<Bits>::max() >> 1);  // all but the sign bit
  if (n == 1) {
    int64_t best = 0;
    Bits top = row[0] & magnitude;
    for (int64_t i = 1; i < m; ++i) {
      const Bits v = row[i] & magnitude;
      if (v > top) { top = v; best = i; }
    }
    for (int64_t i = 0; i < m; ++i) keep[i] = i == best;
    return;
  }
  if (n == m - 1) {
    int64_t worst = 0;
    Bits low = row[0] & magnitude;
    for (int64_t i = 1; i < m; ++i) {
      const Bits v = row[i] & magnitude;
      if (v <= low) { low = v; worst = i; }
    }
    for (int64_t i = 0; i < m; ++i) keep[i] = i != worst;
    return;
  }
  for (int64_t i = 0; i < m; ++i) mag[i] = static_cast<int32_t>(row[i] & magnitude);
  if (m <= kMaxCountM) {
    for (int64_t i = 0; i < m; ++i) {
      const int32_t v = mag[i];
      int32_t beaten_by = 0;
      for (int64_t j = 0; j < i; ++j) beaten_by += mag[j] >= v;
      for (int64_t j = i + 1; j < m; ++j) beaten_by += mag[j] > v;
      keep[i] = beaten_by < n;
    }
    return;
  }
  // Unique keys: magnitude, then the lower index first; the n-th largest is the threshold.
  for (int64_t i = 0; i < m; ++i) keys[i] = (int64_t(mag[i]) << 32) | (0xFFFFFFFFLL - i);
  std::copy(keys, keys + m, order);
  std::nth_element(order, order + (n - 1), order + m, std::greater<int64_t>());
  const int64_t threshold = order[n - 1];
  for (int64_t i = 0; i < m; ++i) keep[i] = keys[i] >= threshold;
}

template <typename Bits>
void select_all(const Bits* bits, uint8_t* keep, int64_t groups, int64_t m, int64_t n, int threads) {
#pragma omp parallel num_threads(threads)
  {
    std::vector<int32_t> mag(m);
    std::vector<int64_t> keys(m), order(m);
#pragma omp for schedule(static)
    for (int64_t g = 0; g < groups; ++g) {
      select_group(bits + g * m, keep + g * m, m, n, mag.data(), keys.data(), order.data());
    }
  }
}

}  // namespace

extern "C" {

// The ABI version: kernel.py refuses a library that reports another.
int pgf_nm_select_version() { return 1; }

void pgf_nm_select_u16(const uint16_t* bits, uint8_t* keep, int64_t groups, int64_t m, int64_t n, int threads) {
  select_all(bits, keep, groups, m, n, threads);
}

void pgf_nm_select_u32(const uint32_t* bits, uint8_t* keep, int64_t groups, int64_t m, int64_t n, int threads) {
  select_all(bits, keep, groups, m, n, threads);
}

}  // extern "C"
