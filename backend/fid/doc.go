// Package fid measures the image models by FID: the Fréchet distance between Gaussians fitted to
// feature vectors of generated and of real images (FrechetDistance), on feature networks small
// enough to train and ship in this repository. Inception-v3 features, which published FIDs use,
// cannot be downloaded here, so these numbers are comparable only with each other — same feature
// file, same reference, same sample count — never with published FIDs.
//
// # Feature networks (weights/, read with Load)
//
// MNIST and Fashion-MNIST: weights/classifier-mnist.msgpack and weights/classifier-fashion.msgpack,
// each a Classifier (103,018 parameters, f32, 413 KB): 1×28×28 → 3×3 stride-2 conv, ReLU →
// 8×14×14 → 3×3 stride-2 conv, ReLU → 16×7×7 → flatten (784) → fully connected 128, ReLU → 10
// logits. The FID features are the 128 ReLU outputs of that fully connected hidden layer (the
// penultimate layer; meta key feature_layer). Each was trained by TrainAndSave on the 60,000
// images of the training split (DefaultTrainConfig: 10 epochs of batch 128, Adam 1e-3 with
// cosine decay, seed 1; about 4 minutes on 2 shared cores) and scores 98.55% (MNIST) and 89.63%
// (Fashion-MNIST) on the 10,000 test images (meta key test_accuracy).
//
// Emoji: weights/features-emoji.msgpack, a RandConv — an untrained convolutional net with random
// weights from seed 1 (3×32×32 → 32@16² → 64@8² → 128@4², ReLU, channel means: 128 features,
// 93,024 weights, f16, 187 KB). There are no labels to train a classifier on. Its weakness: the
// features are not semantic; they see colour, edges and texture of 15×15-pixel patches averaged
// over the image, so they penalise noise, blur and wrong colours but barely notice where parts
// are or what an emoji depicts. See RandConv.
//
// # Protocol
//
//   - Reference (ReferenceSpec, ReferenceStats): the whole test split of MNIST and Fashion-MNIST
//     (10,000 images that neither the generative model nor the classifier trained on), and all
//     3,926 images of the emoji set (it has no split, and the generative model trains on all of
//     it).
//   - Generated samples: n = 1,000 for quick checks and n = 5,000 for reported numbers (emoji:
//     n = 1,000), at the feature network's size (28×28 gray, 32×32 colour), pixels clamped to
//     [-1, 1] as they are shown. Score gives the FID of a batch against the reference statistics.
//   - Statistics: float64 mean and unbiased (n − 1) covariance (ComputeStats), as pytorch-fid and
//     clean-fid fit them.
//   - FID depends on n (its estimator is biased upwards, the more the fewer samples), so only
//     numbers at the same n are comparable, and each is read against the noise floor below.
//
// # Noise floor (NoiseFloor; mean ± SD over 5 random draws, seed 1)
//
// What real images score against real images — the value a perfect generator would get:
//
//	                                              MNIST          Fashion        emoji
//	test half vs other half (5,000 vs 5,000)      2.09 ± 0.10    0.75 ± 0.08    —
//	1,000 of a test half vs the other half        6.35 ± 0.39    2.49 ± 0.28    —
//	1,000 train images vs the test split          7.21 ± 0.52    1.82 ± 0.21    —
//	5,000 train images vs the test split          2.86 ± 0.25    0.52 ± 0.03    —
//	emoji half vs other half (1,963 vs 1,963)     —              —              0.0161 ± 0.0020
//	500 of an emoji half vs the other half        —              —              0.0444 ± 0.0056
//	1,000 of an emoji half vs the other half      —              —              0.0289 ± 0.0013
//
// The "train images vs the test split" rows are the floor of the protocol itself (a generator
// trained on the training split, scored against the test split). For scale, one random half of the
// reference against the other half corrupted (one draw each, clean halves 2.04, 0.77, 0.015):
// N(0, 0.1²) pixel noise gives 3.4 (MNIST), 2.3 (Fashion), 0.050 (emoji); N(0, 0.2²) noise 8.8,
// 8.3, 0.16; N(0, 0.4²) noise 34, 35, 0.60; a 2×2 box blur 28, 13, 0.14; keeping only classes
// 0–4 (mode collapse) 109 and 152.
//
// The MNIST test split is ordered (its two halves come from different groups of writers): its
// first 1,000 images score 17.8 against the whole split, far above the random-draw floor, so
// reference subsets must be drawn at random, never taken from the front.
package fid
