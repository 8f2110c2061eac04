// Package model defines the networks a weights file holds and the samplers that draw from them, the
// part of the project that the browser client, both training engines and the ASBM math share:
//
//   - Net: an architecture (weights.Arch: the 2-D MLP of mlp.go or the image U-Net of unet.go), its
//     parameters by name (ParamShapes, NewNet, NetFromFile) and ForwardCPU, the plain-Go forward
//     that every engine (gorgonia, WGSL) is tested against and the browser's CPU path;
//   - VP, the variance-preserving base SDE and its closed forms (asbm.md §1.2);
//   - Noise, the project's one noise convention (a PCG seeded with (seed, NoiseStream)), so a seed
//     gives the same samples in the browser, in `backend sample` and on any GPU;
//   - Run, the one implementation of the samplers (asbm.md §3.3: Euler–Maruyama backward SDE, Heun
//     PF-ODE, the distilled one-step generator) over an Engine; SampleCPU runs it on any Evaluator
//     (a Net, or a training engine's model), and package shaders' SampleGPU on WGSL kernels.
//
// It imports only weights and the standard library.
package model
