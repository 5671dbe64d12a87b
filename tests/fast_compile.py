"""XLA flags for the suite's CPU compiles: less LLVM optimisation halves the
compile time of a training step, and compiling, not running, is most of the
suite's time. What a program computes does not change."""

FLAGS = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
