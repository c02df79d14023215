// Configure-time probe (cmake/NativeFlags.cmake): does the compiler build a
// four-double initializer list correctly with the flags under test? GCC 12.2
// at -O2/-O3 broadcasts 0.5 into all four lanes, dropping the 0.0, when AVX-512
// is enabled (-march=native on AVX-512 CPUs, -march=x86-64-v4) and also when
// only tuning for Intel's AVX-512 server cores (-march=x86-64-v3
// -mtune=skylake-avx512, icelake-server, sapphirerapids): the latter shows the
// miscompile (exit 1) on any AVX2 CPU, the former needs an AVX-512 one to run.
#include <vector>

__attribute__((noinline)) double last(const std::vector<double>& w) { return w.back(); }

int main() {
  std::vector<double> w{0.5, 0.5, 0.5, 0.0};
  return last(w) == 0.0 ? 0 : 1;
}
