// Configure-time probe (cmake/NativeFlags.cmake): does the compiler build a
// four-double initializer list correctly with the flags under test? GCC 12.2
// with AVX-512 enabled (-march=native on AVX-512 CPUs, or -march=x86-64-v4)
// was measured here to broadcast 0.5 into all four lanes, dropping the 0.0.
#include <vector>

__attribute__((noinline)) double last(const std::vector<double>& w) { return w.back(); }

int main() {
  std::vector<double> w{0.5, 0.5, 0.5, 0.0};
  return last(w) == 0.0 ? 0 : 1;
}
