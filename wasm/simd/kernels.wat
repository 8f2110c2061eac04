;; kernels.wat: the U-Net layers of the browser's CPU path as WebAssembly SIMD (f32x4, f64x2)
;; kernels, for wasm/simd.go. build.sh assembles it with wabt's wat2wasm into kernels.wasm, which
;; the Go client embeds (build tag asbmsimd) and instantiates with WebAssembly.instantiate.
;;
;; The module owns its linear memory (exported as "mem"). The Go client places each network's
;; weights there once, copies a batch of inputs in, calls the exports below layer by layer on
;; offsets into that memory, and copies the output back: activations never leave the module
;; between layers. Every pointer is a byte offset; every tensor is float32, NCHW.
;;
;; Every kernel computes each output element with exactly the operations, in exactly the order, of
;; the plain-Go reference in model/unet.go (ConvCPU, GroupNormCPU, SiLU, linear, AvgPool2xCPU,
;; Upsample2xCPU, ConcatCPU): vectors run across independent outputs (pixels or output features),
;; never across the terms of one sum, and WebAssembly has no fused multiply-add, so the results
;; are bit-identical to the reference as Go compiles it for WebAssembly. (The only exception is the
;; sign of an exact zero: a conv adds w·0 for the zero padding where the reference skips the tap,
;; and −0 + (+0) is +0.)
;;
;; Conventions that keep the loops simple and fast: vector loops may read up to 16 floats past the
;; end of an input and write up to 3 floats past the end of an output row, plane or tensor, so the
;; Go allocator leaves 16 floats of slack after every buffer; a kernel that writes past a row end
;; processes rows in increasing order, so the next row overwrites what spilled into it. Outputs
;; never alias inputs.
(module
  (memory (export "mem") 1)

  ;; copy4 copies n floats from src to dst, 4 at a time: it reads and writes up to 3 floats past
  ;; the end.
  (func $copy4 (param $dst i32) (param $src i32) (param $n i32)
    (local $end i32)
    (local.set $end (i32.add (local.get $src) (i32.shl (local.get $n) (i32.const 2))))
    (block $done
      (loop $l
        (br_if $done (i32.ge_u (local.get $src) (local.get $end)))
        (v128.store (local.get $dst) (v128.load (local.get $src)))
        (local.set $src (i32.add (local.get $src) (i32.const 16)))
        (local.set $dst (i32.add (local.get $dst) (i32.const 16)))
        (br $l))))

  ;; copyadd4 is copy4 that also adds add[i] to each value (dst = src + add), in that order.
  (func $copyadd4 (param $dst i32) (param $src i32) (param $add i32) (param $n i32)
    (local $end i32)
    (local.set $end (i32.add (local.get $src) (i32.shl (local.get $n) (i32.const 2))))
    (block $done
      (loop $l
        (br_if $done (i32.ge_u (local.get $src) (local.get $end)))
        (v128.store (local.get $dst) (f32x4.add (v128.load (local.get $src)) (v128.load (local.get $add))))
        (local.set $src (i32.add (local.get $src) (i32.const 16)))
        (local.set $add (i32.add (local.get $add) (i32.const 16)))
        (local.set $dst (i32.add (local.get $dst) (i32.const 16)))
        (br $l))))

  ;; copysplat4 is copy4 that also adds the one value v to each value (dst = src + v).
  (func $copysplat4 (param $dst i32) (param $src i32) (param $v v128) (param $n i32)
    (local $end i32)
    (local.set $end (i32.add (local.get $src) (i32.shl (local.get $n) (i32.const 2))))
    (block $done
      (loop $l
        (br_if $done (i32.ge_u (local.get $src) (local.get $end)))
        (v128.store (local.get $dst) (f32x4.add (v128.load (local.get $src)) (local.get $v)))
        (local.set $src (i32.add (local.get $src) (i32.const 16)))
        (local.set $dst (i32.add (local.get $dst) (i32.const 16)))
        (br $l))))

  ;; pad writes planes h×w planes of x into p as (h+2)×(w+2) planes with a border of zeros, the
  ;; layout conv reads for a 3×3 kernel.
  (func $pad (param $x i32) (param $p i32) (param $planes i32) (param $h i32) (param $w i32)
    (local $pw4 i32) (local $row i32) (local $dst i32)
    (local.set $pw4 (i32.shl (i32.add (local.get $w) (i32.const 2)) (i32.const 2)))
    (block $done
      (loop $plane
        (br_if $done (i32.eqz (local.get $planes)))
        (memory.fill (local.get $p) (i32.const 0) (local.get $pw4)) ;; top border row
        (local.set $dst (i32.add (local.get $p) (local.get $pw4)))
        (local.set $row (local.get $h))
        (loop $rows
          ;; The copy spills into this row's right border and the next row's left border and first
          ;; values: both borders are written after it, the next row's values by the next copy.
          (call $copy4 (i32.add (local.get $dst) (i32.const 4)) (local.get $x) (local.get $w))
          (f32.store (local.get $dst) (f32.const 0))
          (f32.store (i32.add (local.get $dst) (i32.sub (local.get $pw4) (i32.const 4))) (f32.const 0))
          (local.set $x (i32.add (local.get $x) (i32.shl (local.get $w) (i32.const 2))))
          (local.set $dst (i32.add (local.get $dst) (local.get $pw4)))
          (br_if $rows (local.tee $row (i32.sub (local.get $row) (i32.const 1)))))
        (memory.fill (local.get $dst) (i32.const 0) (local.get $pw4)) ;; bottom border row
        (local.set $p (i32.add (local.get $dst) (local.get $pw4)))
        (local.set $planes (i32.sub (local.get $planes) (i32.const 1)))
        (br $plane))))

  ;; conv: y = conv_k(x) + b (+ tadd) (+ radd) for n images, k = 3 (zero padding 1) or k = 1;
  ;; ConvCPU followed, where given, by the time-embedding add of a residual block's first conv
  ;; (tadd: one value per image and output channel, n×cout) and the residual add of its second
  ;; (radd: n×cout×h×w). A zero pointer leaves the add out; at most one of them is given (tadd wins).
  ;;
  ;; wp holds the weights packed by the Go side: for each tile of 4 output channels (the last
  ;; zero-filled), for each input channel, for each of the k·k taps in (kh, kw) order, the 4
  ;; channels' weights; bp the biases, zero-filled to a multiple of 4. s is scratch of
  ;; convScratch(cin, cout, h, w, k) bytes (simd.go) with 16-byte alignment.
  ;;
  ;; How: a 3×3 input is first copied into a zero-bordered (h+2)×(w+2) layout P. Then output pixel
  ;; (r, c) at o = r·(w+2) + c reads P[o + kh·(w+2) + kw]: each tap is one fixed offset, so a tile
  ;; of 8 consecutive o (2 vectors) × 4 output channels takes 2 unaligned loads and 4 broadcast
  ;; weights per tap and keeps 8 accumulators in registers for the whole sum over cin·k·k terms.
  ;; The two columns o with c ≥ w are computed and thrown away, which costs 2/(w+2) of the work
  ;; and removes every bounds test. Tiles go to the scratch Y (4·⌈cout/4⌉ rows of L = h·(w+2)
  ;; rounded up to 8), and a last pass copies the w valid columns of each row into y, adding tadd
  ;; or radd on the way. A 1×1 conv reads x itself (offset 0 only, no padding).
  (func (export "conv")
    (param $x i32) (param $wp i32) (param $bp i32) (param $y i32) (param $s i32)
    (param $n i32) (param $cin i32) (param $cout i32) (param $h i32) (param $w i32) (param $k i32)
    (param $tadd i32) (param $radd i32)
    (local $pw i32) (local $pw4 i32) (local $ps4 i32) (local $lr i32) (local $lr4 i32)
    (local $src i32) (local $yp i32) (local $img i32) (local $ct i32) (local $nct i32)
    (local $ob i32) (local $ci i32) (local $kh i32) (local $r i32) (local $rr i32) (local $q i32)
    (local $wct i32) (local $yq i32) (local $co i32) (local $row i32) (local $hw4 i32)
    (local $ximg i32) (local $yimg i32) (local $d i32) (local $e i32) (local $tap4 i32)
    (local $a0 v128) (local $a1 v128) (local $a2 v128) (local $a3 v128)
    (local $a4 v128) (local $a5 v128) (local $a6 v128) (local $a7 v128)
    (local $x0 v128) (local $x1 v128) (local $wv v128)
    (local.set $hw4 (i32.shl (i32.mul (local.get $h) (local.get $w)) (i32.const 2)))
    (local.set $nct (i32.shr_u (i32.add (local.get $cout) (i32.const 3)) (i32.const 2)))
    (if (i32.eq (local.get $k) (i32.const 3))
      (then
        (local.set $pw (i32.add (local.get $w) (i32.const 2)))
        (local.set $ps4 (i32.shl (i32.mul (local.get $pw) (i32.add (local.get $h) (i32.const 2))) (i32.const 2)))
        ;; Y after P and its slack, 16-byte aligned.
        (local.set $yp (i32.and (i32.add (i32.add (local.get $s) (i32.mul (local.get $ps4) (local.get $cin))) (i32.const 79)) (i32.const -16))))
      (else
        (local.set $pw (local.get $w))
        (local.set $ps4 (local.get $hw4))
        (local.set $yp (local.get $s))))
    (local.set $pw4 (i32.shl (local.get $pw) (i32.const 2)))
    (local.set $lr (i32.and (i32.add (i32.mul (local.get $h) (local.get $pw)) (i32.const 7)) (i32.const -8)))
    (local.set $lr4 (i32.shl (local.get $lr) (i32.const 2)))
    (local.set $tap4 (i32.shl (i32.mul (local.get $k) (local.get $k)) (i32.const 4))) ;; bytes of one input channel's packed weights
    (local.set $img (i32.const 0))
    (loop $images
      (local.set $ximg (i32.add (local.get $x) (i32.mul (local.get $img) (i32.mul (local.get $cin) (local.get $hw4)))))
      (local.set $yimg (i32.add (local.get $y) (i32.mul (local.get $img) (i32.mul (local.get $cout) (local.get $hw4)))))
      (if (i32.eq (local.get $k) (i32.const 3))
        (then
          (call $pad (local.get $ximg) (local.get $s) (local.get $cin) (local.get $h) (local.get $w))
          (local.set $src (local.get $s)))
        (else (local.set $src (local.get $ximg))))
      (local.set $ct (i32.const 0))
      (loop $tiles
        (local.set $wct (i32.add (local.get $wp) (i32.mul (local.get $ct) (i32.mul (local.get $cin) (local.get $tap4)))))
        (local.set $ob (i32.const 0))
        (loop $blocks
          ;; Start from the bias, as ConvCPU does.
          (local.set $q (i32.add (local.get $bp) (i32.shl (local.get $ct) (i32.const 4))))
          (local.set $a0 (v128.load32_splat offset=0 (local.get $q)))
          (local.set $a1 (local.get $a0))
          (local.set $a2 (v128.load32_splat offset=4 (local.get $q)))
          (local.set $a3 (local.get $a2))
          (local.set $a4 (v128.load32_splat offset=8 (local.get $q)))
          (local.set $a5 (local.get $a4))
          (local.set $a6 (v128.load32_splat offset=12 (local.get $q)))
          (local.set $a7 (local.get $a6))
          (local.set $r (i32.add (local.get $src) (i32.shl (local.get $ob) (i32.const 2))))
          (local.set $q (local.get $wct))
          (local.set $ci (local.get $cin))
          (if (i32.eq (local.get $k) (i32.const 3))
            (then
              (loop $chans3
                (local.set $rr (local.get $r))
                (local.set $kh (i32.const 3))
                (loop $taprows
                  ;; tap (kh, 0)
                  (local.set $x0 (v128.load offset=0 (local.get $rr)))
                  (local.set $x1 (v128.load offset=16 (local.get $rr)))
                  (local.set $wv (v128.load32_splat offset=0 (local.get $q)))
                  (local.set $a0 (f32x4.add (local.get $a0) (f32x4.mul (local.get $wv) (local.get $x0))))
                  (local.set $a1 (f32x4.add (local.get $a1) (f32x4.mul (local.get $wv) (local.get $x1))))
                  (local.set $wv (v128.load32_splat offset=4 (local.get $q)))
                  (local.set $a2 (f32x4.add (local.get $a2) (f32x4.mul (local.get $wv) (local.get $x0))))
                  (local.set $a3 (f32x4.add (local.get $a3) (f32x4.mul (local.get $wv) (local.get $x1))))
                  (local.set $wv (v128.load32_splat offset=8 (local.get $q)))
                  (local.set $a4 (f32x4.add (local.get $a4) (f32x4.mul (local.get $wv) (local.get $x0))))
                  (local.set $a5 (f32x4.add (local.get $a5) (f32x4.mul (local.get $wv) (local.get $x1))))
                  (local.set $wv (v128.load32_splat offset=12 (local.get $q)))
                  (local.set $a6 (f32x4.add (local.get $a6) (f32x4.mul (local.get $wv) (local.get $x0))))
                  (local.set $a7 (f32x4.add (local.get $a7) (f32x4.mul (local.get $wv) (local.get $x1))))
                  ;; tap (kh, 1)
                  (local.set $x0 (v128.load offset=4 (local.get $rr)))
                  (local.set $x1 (v128.load offset=20 (local.get $rr)))
                  (local.set $wv (v128.load32_splat offset=16 (local.get $q)))
                  (local.set $a0 (f32x4.add (local.get $a0) (f32x4.mul (local.get $wv) (local.get $x0))))
                  (local.set $a1 (f32x4.add (local.get $a1) (f32x4.mul (local.get $wv) (local.get $x1))))
                  (local.set $wv (v128.load32_splat offset=20 (local.get $q)))
                  (local.set $a2 (f32x4.add (local.get $a2) (f32x4.mul (local.get $wv) (local.get $x0))))
                  (local.set $a3 (f32x4.add (local.get $a3) (f32x4.mul (local.get $wv) (local.get $x1))))
                  (local.set $wv (v128.load32_splat offset=24 (local.get $q)))
                  (local.set $a4 (f32x4.add (local.get $a4) (f32x4.mul (local.get $wv) (local.get $x0))))
                  (local.set $a5 (f32x4.add (local.get $a5) (f32x4.mul (local.get $wv) (local.get $x1))))
                  (local.set $wv (v128.load32_splat offset=28 (local.get $q)))
                  (local.set $a6 (f32x4.add (local.get $a6) (f32x4.mul (local.get $wv) (local.get $x0))))
                  (local.set $a7 (f32x4.add (local.get $a7) (f32x4.mul (local.get $wv) (local.get $x1))))
                  ;; tap (kh, 2)
                  (local.set $x0 (v128.load offset=8 (local.get $rr)))
                  (local.set $x1 (v128.load offset=24 (local.get $rr)))
                  (local.set $wv (v128.load32_splat offset=32 (local.get $q)))
                  (local.set $a0 (f32x4.add (local.get $a0) (f32x4.mul (local.get $wv) (local.get $x0))))
                  (local.set $a1 (f32x4.add (local.get $a1) (f32x4.mul (local.get $wv) (local.get $x1))))
                  (local.set $wv (v128.load32_splat offset=36 (local.get $q)))
                  (local.set $a2 (f32x4.add (local.get $a2) (f32x4.mul (local.get $wv) (local.get $x0))))
                  (local.set $a3 (f32x4.add (local.get $a3) (f32x4.mul (local.get $wv) (local.get $x1))))
                  (local.set $wv (v128.load32_splat offset=40 (local.get $q)))
                  (local.set $a4 (f32x4.add (local.get $a4) (f32x4.mul (local.get $wv) (local.get $x0))))
                  (local.set $a5 (f32x4.add (local.get $a5) (f32x4.mul (local.get $wv) (local.get $x1))))
                  (local.set $wv (v128.load32_splat offset=44 (local.get $q)))
                  (local.set $a6 (f32x4.add (local.get $a6) (f32x4.mul (local.get $wv) (local.get $x0))))
                  (local.set $a7 (f32x4.add (local.get $a7) (f32x4.mul (local.get $wv) (local.get $x1))))
                  (local.set $rr (i32.add (local.get $rr) (local.get $pw4)))
                  (local.set $q (i32.add (local.get $q) (i32.const 48)))
                  (br_if $taprows (local.tee $kh (i32.sub (local.get $kh) (i32.const 1)))))
                (local.set $r (i32.add (local.get $r) (local.get $ps4)))
                (br_if $chans3 (local.tee $ci (i32.sub (local.get $ci) (i32.const 1))))))
            (else
              (loop $chans1
                (local.set $x0 (v128.load offset=0 (local.get $r)))
                (local.set $x1 (v128.load offset=16 (local.get $r)))
                (local.set $wv (v128.load32_splat offset=0 (local.get $q)))
                (local.set $a0 (f32x4.add (local.get $a0) (f32x4.mul (local.get $wv) (local.get $x0))))
                (local.set $a1 (f32x4.add (local.get $a1) (f32x4.mul (local.get $wv) (local.get $x1))))
                (local.set $wv (v128.load32_splat offset=4 (local.get $q)))
                (local.set $a2 (f32x4.add (local.get $a2) (f32x4.mul (local.get $wv) (local.get $x0))))
                (local.set $a3 (f32x4.add (local.get $a3) (f32x4.mul (local.get $wv) (local.get $x1))))
                (local.set $wv (v128.load32_splat offset=8 (local.get $q)))
                (local.set $a4 (f32x4.add (local.get $a4) (f32x4.mul (local.get $wv) (local.get $x0))))
                (local.set $a5 (f32x4.add (local.get $a5) (f32x4.mul (local.get $wv) (local.get $x1))))
                (local.set $wv (v128.load32_splat offset=12 (local.get $q)))
                (local.set $a6 (f32x4.add (local.get $a6) (f32x4.mul (local.get $wv) (local.get $x0))))
                (local.set $a7 (f32x4.add (local.get $a7) (f32x4.mul (local.get $wv) (local.get $x1))))
                (local.set $r (i32.add (local.get $r) (local.get $ps4)))
                (local.set $q (i32.add (local.get $q) (i32.const 16)))
                (br_if $chans1 (local.tee $ci (i32.sub (local.get $ci) (i32.const 1)))))))
          ;; Store the tile: 4 rows of Y, 8 values each.
          (local.set $yq (i32.add (i32.add (local.get $yp) (i32.mul (local.get $ct) (i32.shl (local.get $lr4) (i32.const 2))))
            (i32.shl (local.get $ob) (i32.const 2))))
          (v128.store offset=0 (local.get $yq) (local.get $a0))
          (v128.store offset=16 (local.get $yq) (local.get $a1))
          (local.set $yq (i32.add (local.get $yq) (local.get $lr4)))
          (v128.store offset=0 (local.get $yq) (local.get $a2))
          (v128.store offset=16 (local.get $yq) (local.get $a3))
          (local.set $yq (i32.add (local.get $yq) (local.get $lr4)))
          (v128.store offset=0 (local.get $yq) (local.get $a4))
          (v128.store offset=16 (local.get $yq) (local.get $a5))
          (local.set $yq (i32.add (local.get $yq) (local.get $lr4)))
          (v128.store offset=0 (local.get $yq) (local.get $a6))
          (v128.store offset=16 (local.get $yq) (local.get $a7))
          (br_if $blocks (i32.lt_u (local.tee $ob (i32.add (local.get $ob) (i32.const 8))) (local.get $lr))))
        (br_if $tiles (i32.lt_u (local.tee $ct (i32.add (local.get $ct) (i32.const 1))) (local.get $nct))))
      ;; Copy the valid columns of Y's first cout rows into y, adding tadd or radd.
      (local.set $co (i32.const 0))
      (loop $chans
        (local.set $q (i32.add (local.get $yp) (i32.mul (local.get $co) (local.get $lr4))))
        (local.set $d (i32.add (local.get $yimg) (i32.mul (local.get $co) (local.get $hw4))))
        (if (local.get $radd)
          (then (local.set $e (i32.add (local.get $radd) (i32.sub (local.get $d) (local.get $y))))))
        (local.set $row (local.get $h))
        (loop $rows
          (if (local.get $tadd)
            (then
              (call $copysplat4 (local.get $d) (local.get $q)
                (v128.load32_splat (i32.add (local.get $tadd)
                  (i32.shl (i32.add (i32.mul (local.get $img) (local.get $cout)) (local.get $co)) (i32.const 2))))
                (local.get $w)))
            (else
              (if (local.get $radd)
                (then (call $copyadd4 (local.get $d) (local.get $q) (local.get $e) (local.get $w)))
                (else (call $copy4 (local.get $d) (local.get $q) (local.get $w))))))
          (local.set $q (i32.add (local.get $q) (local.get $pw4)))
          (local.set $d (i32.add (local.get $d) (i32.shl (local.get $w) (i32.const 2))))
          (local.set $e (i32.add (local.get $e) (i32.shl (local.get $w) (i32.const 2))))
          (br_if $rows (local.tee $row (i32.sub (local.get $row) (i32.const 1)))))
        (br_if $chans (i32.lt_u (local.tee $co (i32.add (local.get $co) (i32.const 1))) (local.get $cout))))
      (br_if $images (i32.lt_u (local.tee $img (i32.add (local.get $img) (i32.const 1))) (local.get $n)))))

  ;; silu4 is model.SiLU on 4 float32 values, v / (1 + float32(exp(−float64(v)))), with Go's
  ;; math.Exp written out: the portable algorithm Go uses on WebAssembly (k = int(log2(e)·u ± 0.5),
  ;; hi − lo = u − k·ln 2 in two parts, a degree-5 rational approximation, times 2^k) on u = −v,
  ;; as two float64x2 halves whose steps are interleaved so the two dependency chains overlap.
  ;;
  ;; Where it may differ from Go without changing a float32 result: u is clamped to [−104, 89]
  ;; first (beyond, float32(exp(u)) is 0 or +Inf whatever the exact value; inside, 2^k is a normal
  ;; float64, so Go's Ldexp is an exact multiply); min/max are the cheap pmin/pmax, which keep a
  ;; NaN u as it is; Go's special case |u| < 2^−28 (it returns 1 + u) is left out (both round to
  ;; float32 1). 2^k's bits are (k + 1023) << 52, taken from the float k + 2^52 + 1023, whose low
  ;; mantissa bits hold k + 1023.
  (func $silu4 (param $v v128) (result v128)
    (local $ua v128) (local $ub v128) (local $ka v128) (local $kb v128) (local $ha v128) (local $hb v128)
    (local $la v128) (local $lb v128) (local $ra v128) (local $rb v128) (local $ta v128) (local $tb v128)
    (local $ca v128) (local $cb v128) (local $ya v128) (local $yb v128)
    (local.set $ua (f64x2.neg (f64x2.promote_low_f32x4 (local.get $v))))
    (local.set $ub (f64x2.neg (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $v) (local.get $v)))))
    (local.set $ua (f64x2.pmax (f64x2.pmin (local.get $ua) (v128.const f64x2 89 89)) (v128.const f64x2 -104 -104)))
    (local.set $ub (f64x2.pmax (f64x2.pmin (local.get $ub) (v128.const f64x2 89 89)) (v128.const f64x2 -104 -104)))
    (local.set $ka (f64x2.trunc (f64x2.add (f64x2.mul (v128.const f64x2 1.44269504088896338700e+00 1.44269504088896338700e+00) (local.get $ua)) (v128.or (v128.and (local.get $ua) (v128.const i64x2 0x8000000000000000 0x8000000000000000)) (v128.const f64x2 0.5 0.5)))))
    (local.set $kb (f64x2.trunc (f64x2.add (f64x2.mul (v128.const f64x2 1.44269504088896338700e+00 1.44269504088896338700e+00) (local.get $ub)) (v128.or (v128.and (local.get $ub) (v128.const i64x2 0x8000000000000000 0x8000000000000000)) (v128.const f64x2 0.5 0.5)))))
    (local.set $ha (f64x2.sub (local.get $ua) (f64x2.mul (local.get $ka) (v128.const f64x2 6.93147180369123816490e-01 6.93147180369123816490e-01))))
    (local.set $hb (f64x2.sub (local.get $ub) (f64x2.mul (local.get $kb) (v128.const f64x2 6.93147180369123816490e-01 6.93147180369123816490e-01))))
    (local.set $la (f64x2.mul (local.get $ka) (v128.const f64x2 1.90821492927058770002e-10 1.90821492927058770002e-10)))
    (local.set $lb (f64x2.mul (local.get $kb) (v128.const f64x2 1.90821492927058770002e-10 1.90821492927058770002e-10)))
    (local.set $ra (f64x2.sub (local.get $ha) (local.get $la)))
    (local.set $rb (f64x2.sub (local.get $hb) (local.get $lb)))
    (local.set $ta (f64x2.mul (local.get $ra) (local.get $ra)))
    (local.set $tb (f64x2.mul (local.get $rb) (local.get $rb)))
    (local.set $ca (f64x2.mul (local.get $ta) (v128.const f64x2 4.13813679705723846039e-08 4.13813679705723846039e-08)))
    (local.set $cb (f64x2.mul (local.get $tb) (v128.const f64x2 4.13813679705723846039e-08 4.13813679705723846039e-08)))
    (local.set $ca (f64x2.add (v128.const f64x2 -1.65339022054652515390e-06 -1.65339022054652515390e-06) (local.get $ca)))
    (local.set $cb (f64x2.add (v128.const f64x2 -1.65339022054652515390e-06 -1.65339022054652515390e-06) (local.get $cb)))
    (local.set $ca (f64x2.mul (local.get $ta) (local.get $ca)))
    (local.set $cb (f64x2.mul (local.get $tb) (local.get $cb)))
    (local.set $ca (f64x2.add (v128.const f64x2 6.61375632143793436117e-05 6.61375632143793436117e-05) (local.get $ca)))
    (local.set $cb (f64x2.add (v128.const f64x2 6.61375632143793436117e-05 6.61375632143793436117e-05) (local.get $cb)))
    (local.set $ca (f64x2.mul (local.get $ta) (local.get $ca)))
    (local.set $cb (f64x2.mul (local.get $tb) (local.get $cb)))
    (local.set $ca (f64x2.add (v128.const f64x2 -2.77777777770155933842e-03 -2.77777777770155933842e-03) (local.get $ca)))
    (local.set $cb (f64x2.add (v128.const f64x2 -2.77777777770155933842e-03 -2.77777777770155933842e-03) (local.get $cb)))
    (local.set $ca (f64x2.mul (local.get $ta) (local.get $ca)))
    (local.set $cb (f64x2.mul (local.get $tb) (local.get $cb)))
    (local.set $ca (f64x2.add (v128.const f64x2 1.66666666666666657415e-01 1.66666666666666657415e-01) (local.get $ca)))
    (local.set $cb (f64x2.add (v128.const f64x2 1.66666666666666657415e-01 1.66666666666666657415e-01) (local.get $cb)))
    (local.set $ca (f64x2.sub (local.get $ra) (f64x2.mul (local.get $ta) (local.get $ca))))
    (local.set $cb (f64x2.sub (local.get $rb) (f64x2.mul (local.get $tb) (local.get $cb))))
    (local.set $ya (f64x2.sub (v128.const f64x2 1 1) (f64x2.sub (f64x2.sub (local.get $la) (f64x2.div (f64x2.mul (local.get $ra) (local.get $ca)) (f64x2.sub (v128.const f64x2 2 2) (local.get $ca)))) (local.get $ha))))
    (local.set $yb (f64x2.sub (v128.const f64x2 1 1) (f64x2.sub (f64x2.sub (local.get $lb) (f64x2.div (f64x2.mul (local.get $rb) (local.get $cb)) (f64x2.sub (v128.const f64x2 2 2) (local.get $cb)))) (local.get $hb))))
    (local.set $ya (f64x2.mul (local.get $ya) (i64x2.shl (f64x2.add (local.get $ka) (v128.const f64x2 0x1.00000000003ffp+52 0x1.00000000003ffp+52)) (i32.const 52))))
    (local.set $yb (f64x2.mul (local.get $yb) (i64x2.shl (f64x2.add (local.get $kb) (v128.const f64x2 0x1.00000000003ffp+52 0x1.00000000003ffp+52)) (i32.const 52))))
    (f32x4.div (local.get $v) (f32x4.add (v128.const f32x4 1 1 1 1)
      (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23
        (f32x4.demote_f64x2_zero (local.get $ya)) (f32x4.demote_f64x2_zero (local.get $yb))))))

  ;; gn: y = GroupNormCPU(x; gamma, beta) for n images of c channels of hw values in groups
  ;; groups, followed by SiLU when silu ≠ 0. The mean and the sum of squared deviations are
  ;; float64 sums in the reference's order (one scalar chain each: reordering them would change
  ;; the last bits); the normalisation float32((x − mean)·rstd)·γ + β runs on 4 values at a time.
  (func (export "gn")
    (param $x i32) (param $y i32) (param $gamma i32) (param $beta i32)
    (param $n i32) (param $c i32) (param $hw i32) (param $groups i32) (param $silu i32)
    (local $cg i32) (local $seg i32) (local $p i32) (local $end i32) (local $g i32) (local $ch i32)
    (local $s f64) (local $s2 f64) (local $d f64) (local $mean f64) (local $rstd f64)
    (local $xo i32) (local $yo i32) (local $cend i32) (local $ce i32)
    (local $vm v128) (local $vr v128) (local $vg v128) (local $vb v128) (local $v v128)
    (local.set $cg (i32.div_u (local.get $c) (local.get $groups)))
    (local.set $seg (i32.shl (i32.mul (local.get $cg) (local.get $hw)) (i32.const 2)))
    (local.set $end (i32.add (local.get $x) (i32.mul (local.get $n) (i32.shl (i32.mul (local.get $c) (local.get $hw)) (i32.const 2)))))
    (local.set $xo (local.get $x))
    (local.set $yo (local.get $y))
    (local.set $g (i32.const 0)) ;; group index within the image
    (block $done
      (loop $segs
        (br_if $done (i32.ge_u (local.get $xo) (local.get $end)))
        (local.set $s (f64.const 0))
        (local.set $p (local.get $xo))
        (local.set $cend (i32.add (local.get $xo) (local.get $seg)))
        (loop $sum
          (local.set $s (f64.add (local.get $s) (f64.promote_f32 (f32.load (local.get $p)))))
          (br_if $sum (i32.lt_u (local.tee $p (i32.add (local.get $p) (i32.const 4))) (local.get $cend))))
        (local.set $mean (f64.div (local.get $s) (f64.convert_i32_u (i32.mul (local.get $cg) (local.get $hw)))))
        (local.set $s2 (f64.const 0))
        (local.set $p (local.get $xo))
        (loop $sum2
          (local.set $d (f64.sub (f64.promote_f32 (f32.load (local.get $p))) (local.get $mean)))
          (local.set $s2 (f64.add (local.get $s2) (f64.mul (local.get $d) (local.get $d))))
          (br_if $sum2 (i32.lt_u (local.tee $p (i32.add (local.get $p) (i32.const 4))) (local.get $cend))))
        (local.set $rstd (f64.div (f64.const 1) (f64.sqrt (f64.add
          (f64.div (local.get $s2) (f64.convert_i32_u (i32.mul (local.get $cg) (local.get $hw))))
          (f64.const 1e-5))))) ;; model.GroupNormEps
        (local.set $vm (f64x2.splat (local.get $mean)))
        (local.set $vr (f64x2.splat (local.get $rstd)))
        ;; Normalise channel by channel (γ, β per channel); vectors spill past a channel's end into
        ;; the next channel's first values, which that channel then rewrites.
        (local.set $ch (i32.mul (local.get $g) (local.get $cg)))
        (local.set $ce (i32.add (local.get $ch) (local.get $cg)))
        (loop $chans
          (local.set $vg (v128.load32_splat (i32.add (local.get $gamma) (i32.shl (local.get $ch) (i32.const 2)))))
          (local.set $vb (v128.load32_splat (i32.add (local.get $beta) (i32.shl (local.get $ch) (i32.const 2)))))
          (local.set $cend (i32.add (local.get $xo) (i32.shl (local.get $hw) (i32.const 2))))
          (local.set $p (local.get $xo))
          (loop $vals
            (local.set $v (v128.load (local.get $p)))
            (local.set $v (f32x4.add (f32x4.mul
              (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23
                (f32x4.demote_f64x2_zero (f64x2.mul (f64x2.sub (f64x2.promote_low_f32x4 (local.get $v)) (local.get $vm)) (local.get $vr)))
                (f32x4.demote_f64x2_zero (f64x2.mul (f64x2.sub (f64x2.promote_low_f32x4
                  (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $v) (local.get $v))) (local.get $vm)) (local.get $vr))))
              (local.get $vg)) (local.get $vb)))
            (if (local.get $silu) (then (local.set $v (call $silu4 (local.get $v)))))
            (v128.store (local.get $yo) (local.get $v))
            (local.set $yo (i32.add (local.get $yo) (i32.const 16)))
            (br_if $vals (i32.lt_u (local.tee $p (i32.add (local.get $p) (i32.const 16))) (local.get $cend))))
          ;; Back to the exact start of the next channel.
          (local.set $yo (i32.add (local.get $yo) (i32.sub (local.get $cend) (local.get $p))))
          (local.set $xo (local.get $cend))
          (br_if $chans (i32.lt_u (local.tee $ch (i32.add (local.get $ch) (i32.const 1))) (local.get $ce))))
        (local.set $g (i32.add (local.get $g) (i32.const 1)))
        (if (i32.eq (local.get $g) (local.get $groups)) (then (local.set $g (i32.const 0))))
        (br $segs))))

  ;; linear: y = x·W + b for rows rows of in values (W [in, out] row-major), followed by SiLU when
  ;; silu ≠ 0; model's linear (y = b, then y += x[i]·W[i, :] for i in order), 4 outputs at a time.
  (func (export "linear")
    (param $x i32) (param $w i32) (param $b i32) (param $y i32)
    (param $rows i32) (param $in i32) (param $out i32) (param $silu i32)
    (local $j i32) (local $i i32) (local $acc v128) (local $xr i32) (local $wq i32) (local $out4 i32) (local $yr i32)
    (local.set $out4 (i32.shl (local.get $out) (i32.const 2)))
    (block $done
      (loop $rowl
        (br_if $done (i32.eqz (local.get $rows)))
        (local.set $j (i32.const 0))
        (loop $cols
          (local.set $acc (v128.load (i32.add (local.get $b) (local.get $j))))
          (local.set $wq (i32.add (local.get $w) (local.get $j)))
          (local.set $xr (local.get $x))
          (local.set $i (local.get $in))
          (loop $terms
            (local.set $acc (f32x4.add (local.get $acc) (f32x4.mul (v128.load32_splat (local.get $xr)) (v128.load (local.get $wq)))))
            (local.set $xr (i32.add (local.get $xr) (i32.const 4)))
            (local.set $wq (i32.add (local.get $wq) (local.get $out4)))
            (br_if $terms (local.tee $i (i32.sub (local.get $i) (i32.const 1)))))
          (if (local.get $silu) (then (local.set $acc (call $silu4 (local.get $acc)))))
          (v128.store (i32.add (local.get $y) (local.get $j)) (local.get $acc))
          (br_if $cols (i32.lt_u (local.tee $j (i32.add (local.get $j) (i32.const 16))) (local.get $out4))))
        (local.set $x (i32.add (local.get $x) (i32.shl (local.get $in) (i32.const 2))))
        (local.set $y (i32.add (local.get $y) (local.get $out4)))
        (local.set $rows (i32.sub (local.get $rows) (i32.const 1)))
        (br $rowl))))

  ;; pool: y = AvgPool2xCPU(x) for planes h×w planes (h, w even): 0.25·(((a + b) + c) + d) over
  ;; each 2×2 block [a b; c d], 4 outputs at a time.
  (func (export "pool") (param $x i32) (param $y i32) (param $planes i32) (param $h i32) (param $w i32)
    (local $r i32) (local $p i32) (local $row0 i32) (local $row1 i32) (local $end i32) (local $w4 i32)
    (local $v0 v128) (local $v1 v128) (local $u0 v128) (local $u1 v128)
    (local.set $w4 (i32.shl (local.get $w) (i32.const 2)))
    (local.set $r (i32.mul (local.get $planes) (i32.shr_u (local.get $h) (i32.const 1)))) ;; output rows
    (block $done
      (loop $rows
        (br_if $done (i32.eqz (local.get $r)))
        (local.set $row0 (local.get $x))
        (local.set $row1 (i32.add (local.get $x) (local.get $w4)))
        (local.set $end (i32.add (local.get $x) (local.get $w4)))
        (local.set $p (local.get $y))
        (loop $cols
          (local.set $v0 (v128.load (local.get $row0)))
          (local.set $v1 (v128.load offset=16 (local.get $row0)))
          (local.set $u0 (v128.load (local.get $row1)))
          (local.set $u1 (v128.load offset=16 (local.get $row1)))
          (v128.store (local.get $p) (f32x4.mul (v128.const f32x4 0.25 0.25 0.25 0.25)
            (f32x4.add (f32x4.add (f32x4.add
              (i8x16.shuffle 0 1 2 3 8 9 10 11 16 17 18 19 24 25 26 27 (local.get $v0) (local.get $v1))
              (i8x16.shuffle 4 5 6 7 12 13 14 15 20 21 22 23 28 29 30 31 (local.get $v0) (local.get $v1)))
              (i8x16.shuffle 0 1 2 3 8 9 10 11 16 17 18 19 24 25 26 27 (local.get $u0) (local.get $u1)))
              (i8x16.shuffle 4 5 6 7 12 13 14 15 20 21 22 23 28 29 30 31 (local.get $u0) (local.get $u1)))))
          (local.set $p (i32.add (local.get $p) (i32.const 16)))
          (local.set $row1 (i32.add (local.get $row1) (i32.const 32)))
          (br_if $cols (i32.lt_u (local.tee $row0 (i32.add (local.get $row0) (i32.const 32))) (local.get $end))))
        (local.set $x (i32.add (local.get $x) (i32.shl (local.get $w4) (i32.const 1))))
        (local.set $y (i32.add (local.get $y) (i32.shr_u (local.get $w4) (i32.const 1))))
        (local.set $r (i32.sub (local.get $r) (i32.const 1)))
        (br $rows))))

  ;; up: y = Upsample2xCPU(x) for planes h×w planes: every value becomes a 2×2 block.
  (func (export "up") (param $x i32) (param $y i32) (param $planes i32) (param $h i32) (param $w i32)
    (local $r i32) (local $p i32) (local $end i32) (local $w8 i32) (local $v v128) (local $lo v128) (local $hi v128)
    (local.set $w8 (i32.shl (local.get $w) (i32.const 3))) ;; bytes of an output row
    (local.set $r (i32.mul (local.get $planes) (local.get $h)))
    (block $done
      (loop $rows
        (br_if $done (i32.eqz (local.get $r)))
        (local.set $end (i32.add (local.get $x) (i32.shl (local.get $w) (i32.const 2))))
        (local.set $p (local.get $y))
        (loop $cols
          (local.set $v (v128.load (local.get $x)))
          (local.set $lo (i8x16.shuffle 0 1 2 3 0 1 2 3 4 5 6 7 4 5 6 7 (local.get $v) (local.get $v)))
          (local.set $hi (i8x16.shuffle 8 9 10 11 8 9 10 11 12 13 14 15 12 13 14 15 (local.get $v) (local.get $v)))
          (v128.store offset=0 (local.get $p) (local.get $lo))
          (v128.store offset=16 (local.get $p) (local.get $hi))
          (local.set $p (i32.add (local.get $p) (i32.const 32)))
          (br_if $cols (i32.lt_u (local.tee $x (i32.add (local.get $x) (i32.const 16))) (local.get $end))))
        ;; x ran up to 3 values past its row: back to the row's end.
        (local.set $x (local.get $end))
        ;; The second output row repeats the first.
        (call $copy4 (i32.add (local.get $y) (local.get $w8)) (local.get $y) (i32.shl (local.get $w) (i32.const 1)))
        (local.set $y (i32.add (local.get $y) (i32.shl (local.get $w8) (i32.const 1))))
        (local.set $r (i32.sub (local.get $r) (i32.const 1)))
        (br $rows))))

  ;; concat: y = ConcatCPU(a, b) for n images: each image's ca·hw values of a, then its cb·hw of b.
  (func (export "concat") (param $a i32) (param $b i32) (param $y i32) (param $n i32) (param $ca i32) (param $cb i32) (param $hw i32)
    (local $la i32) (local $lb i32)
    (local.set $la (i32.shl (i32.mul (local.get $ca) (local.get $hw)) (i32.const 2)))
    (local.set $lb (i32.shl (i32.mul (local.get $cb) (local.get $hw)) (i32.const 2)))
    (block $done
      (loop $imgs
        (br_if $done (i32.eqz (local.get $n)))
        (memory.copy (local.get $y) (local.get $a) (local.get $la))
        (memory.copy (i32.add (local.get $y) (local.get $la)) (local.get $b) (local.get $lb))
        (local.set $a (i32.add (local.get $a) (local.get $la)))
        (local.set $b (i32.add (local.get $b) (local.get $lb)))
        (local.set $y (i32.add (local.get $y) (i32.add (local.get $la) (local.get $lb))))
        (local.set $n (i32.sub (local.get $n) (i32.const 1)))
        (br $imgs))))
)
