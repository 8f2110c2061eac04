package asbm

// BridgeSample exposes bridgeSample to the external tests: x_t = a_t x0 + b_t x1 + γ_t ε at given times.
var BridgeSample = bridgeSample
