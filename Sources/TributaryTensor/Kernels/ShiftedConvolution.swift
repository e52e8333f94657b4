/// "Same" convolutions at stride 1 (odd k × k kernels, padding (k − 1)/2: a U-Net's 3 × 3s)
/// without im2col: the image is copied once into a zero-padded plane per channel, and each
/// kernel tap (i, j) is one product of that tap's [out, in] weights with the padded planes
/// read from offset i·W' + j, W' the padded width. The products run over the padded width,
/// so the k − 1 extra columns per row are computed and dropped; in exchange nothing is
/// copied k² times (im2col writes k² floats per input float, which dominated the U-Net's
/// step). Backward is the same with the padded ∂out: ∂weight per tap is ∂out · shiftedᵀ,
/// ∂in is the convolution of the padded ∂out with the flipped taps.
///
/// Everything lives in the caller's column buffers (`ConvolutionGeometry.columnCount` floats
/// per slot), which are k² times the image: `fits` says whether this layout needs no more.
enum ShiftedConvolution {
    /// Whether `g` is a stride-1 "same" convolution with a kernel larger than 1 × 1.
    static func applies(_ g: ConvolutionGeometry) -> Bool {
        g.stride == 1 && g.kernelHeight == g.kernelWidth && g.kernelHeight > 1 && g.kernelHeight % 2 == 1
            && g.padding == (g.kernelHeight - 1) / 2
    }

    /// The layout of one slot's buffer: the taps' weights (read from slot 0 only), the padded
    /// input, the padded ∂out, the products over the padded width, a tap's ∂weight.
    struct Layout {
        let taps: Int, paddedHeight: Int, paddedWidth: Int
        let weights: Int, paddedInput: Int, paddedGradient: Int, product: Int, tapGradient: Int, total: Int

        init(_ g: ConvolutionGeometry) {
            let k = g.kernelHeight, c = g.inChannels, o = g.outChannels
            taps = k * k
            paddedHeight = g.height + k - 1
            paddedWidth = g.width + k - 1
            let plane = paddedHeight * paddedWidth
            weights = 0
            paddedInput = taps * o * c
            // k − 1 zeros after the last plane: the dropped columns of the last row read them.
            paddedGradient = paddedInput + c * plane + k
            product = paddedGradient + o * plane + k
            tapGradient = product + max(o, c) * g.height * paddedWidth
            total = tapGradient + o * c
        }
    }

    static func fits(_ g: ConvolutionGeometry) -> Bool {
        applies(g) && Layout(g).total <= g.columnCount
    }

    /// Writes `channels` planes of `height × width` into zero-padded planes of the layout's
    /// size, and zeroes the k − 1 floats after them.
    private static func pad(_ source: UnsafePointer<Float>, into target: UnsafeMutablePointer<Float>, channels: Int,
                            height: Int, width: Int, layout l: Layout) {
        let p = (l.paddedWidth - width) / 2, plane = l.paddedHeight * l.paddedWidth
        target.update(repeating: 0, count: channels * plane + (l.paddedWidth - width + 1))
        for c in 0..<channels {
            for y in 0..<height {
                let from = source + (c * height + y) * width
                ConvolutionKernels.copyRow(from: from, to: target + c * plane + (y + p) * l.paddedWidth + p, count: width)
            }
        }
    }

    /// weights[o, c, tap] → taps[tap][o, c]: each tap's matrix contiguous for the products.
    private static func gatherTaps(_ weight: UnsafePointer<Float>, into taps: UnsafeMutablePointer<Float>, _ g: ConvolutionGeometry) {
        let n = g.kernelHeight * g.kernelWidth, oc = g.outChannels * g.inChannels
        for pair in 0..<oc {
            for tap in 0..<n { taps[tap * oc + pair] = weight[pair * n + tap] }
        }
    }

    static func forward(out: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                        bias: UnsafePointer<Float>?, batch: Int, geometry g: ConvolutionGeometry,
                        columns: UnsafeMutablePointer<Float>, slots: Int) {
        let l = Layout(g), k = g.kernelHeight, c = g.inChannels, o = g.outChannels
        let h = g.height, w = g.width, wp = l.paddedWidth, plane = l.paddedHeight * wp, n = h * wp
        let taps = UnsafePointer(columns + l.weights)
        gatherTaps(weight, into: columns + l.weights, g)
        let threads = max(1, min(slots, batch))
        Parallel.forThreadRanges(batch, threads: threads) { t, images in
            let buffer = columns + t * g.columnCount
            let padded = buffer + l.paddedInput, product = buffer + l.product
            for b in images {
                pad(input + b * g.inputImageCount, into: padded, channels: c, height: h, width: w, layout: l)
                for tap in 0..<l.taps {
                    let (i, j) = tap.quotientAndRemainder(dividingBy: k)
                    ConvolutionKernels.product(threads: threads, m: o, n: n, k: c, a: taps + tap * o * c, lda: c,
                                               b: padded + i * wp + j, ldb: plane, beta: tap == 0 ? 0 : 1, c: product, ldc: n)
                }
                let result = out + b * g.outputImageCount
                for channel in 0..<o {
                    let shift = bias?[channel] ?? 0
                    for y in 0..<h {
                        let from = product + channel * n + y * wp, to = result + (channel * h + y) * w
                        for x in 0..<w { to[x] = from[x] + shift }
                    }
                }
            }
        }
    }

    /// ∂weight (into `dWeight`, or a thread's `weightPartials` buffer, as `ConvolutionKernels`
    /// sums them) and ∂input (overwritten or added); ∂bias is left to the caller.
    static func backward(dInput: UnsafeMutablePointer<Float>?, dWeight: UnsafeMutablePointer<Float>, dOut: UnsafePointer<Float>,
                         input: UnsafePointer<Float>, weight: UnsafePointer<Float>, batch: Int, geometry g: ConvolutionGeometry,
                         accumulateInput: Bool, columns: UnsafeMutablePointer<Float>,
                         weightPartials: UnsafeMutablePointer<Float>, threads: Int) {
        let l = Layout(g), k = g.kernelHeight, c = g.inChannels, o = g.outChannels, p = (k - 1) / 2
        let h = g.height, w = g.width, wp = l.paddedWidth, plane = l.paddedHeight * wp, n = h * wp
        let weightCount = o * c * l.taps
        let taps = UnsafePointer(columns + l.weights)
        gatherTaps(weight, into: columns + l.weights, g)
        Parallel.forThreadRanges(batch, threads: threads) { t, images in
            let buffer = columns + t * g.columnCount
            let paddedInput = buffer + l.paddedInput, paddedGradient = buffer + l.paddedGradient
            let product = buffer + l.product, tapGradient = buffer + l.tapGradient
            let gradient = t == 0 ? dWeight : weightPartials + (t - 1) * weightCount
            for b in images {
                pad(input + b * g.inputImageCount, into: paddedInput, channels: c, height: h, width: w, layout: l)
                pad(dOut + b * g.outputImageCount, into: paddedGradient, channels: o, height: h, width: w, layout: l)
                // ∂out over the padded width: its rows start at (p, p) and the columns past
                // the image are the padding's zeros, which cancel the dropped columns' reads.
                let gradientRows = UnsafePointer(paddedGradient + p * wp + p)
                for tap in 0..<l.taps {
                    let (i, j) = tap.quotientAndRemainder(dividingBy: k)
                    ConvolutionKernels.product(threads: threads, transB: true, m: o, n: c, k: n, a: gradientRows, lda: plane,
                                               b: paddedInput + i * wp + j, ldb: plane, c: tapGradient, ldc: c)
                    for pair in 0..<(o * c) { gradient[pair * l.taps + tap] += tapGradient[pair] }
                }
                guard let dInput else { continue }
                // ∂in[c, y, x] = Σ taps[i, j][o, c] · ∂out_padded[o, y + k − 1 − i, x + k − 1 − j].
                for tap in 0..<l.taps {
                    let (i, j) = tap.quotientAndRemainder(dividingBy: k)
                    ConvolutionKernels.product(threads: threads, transA: true, m: c, n: n, k: o, a: taps + tap * o * c, lda: c,
                                               b: paddedGradient + (k - 1 - i) * wp + (k - 1 - j), ldb: plane,
                                               beta: tap == 0 ? 0 : 1, c: product, ldc: n)
                }
                let dImage = dInput + b * g.inputImageCount
                for channel in 0..<c {
                    for y in 0..<h {
                        let from = product + channel * n + y * wp, to = dImage + (channel * h + y) * w
                        if accumulateInput {
                            for x in 0..<w { to[x] += from[x] }
                        } else {
                            for x in 0..<w { to[x] = from[x] }
                        }
                    }
                }
            }
        }
    }
}
