/// The sizes of one 2-D convolution over NCHW images. The layer that builds it checks
/// that the kernel fits the padded image; the kernels trust it.
public struct ConvolutionGeometry: Sendable, Equatable {
    public let inChannels: Int
    public let outChannels: Int
    public let kernelHeight: Int
    public let kernelWidth: Int
    public let stride: Int
    public let padding: Int
    /// The input image's height and width.
    public let height: Int
    public let width: Int

    public init(inChannels: Int, outChannels: Int, kernelHeight: Int, kernelWidth: Int,
                stride: Int, padding: Int, height: Int, width: Int) {
        self.inChannels = inChannels
        self.outChannels = outChannels
        self.kernelHeight = kernelHeight
        self.kernelWidth = kernelWidth
        self.stride = stride
        self.padding = padding
        self.height = height
        self.width = width
    }

    public var outHeight: Int { (height + 2 * padding - kernelHeight) / stride + 1 }
    public var outWidth: Int { (width + 2 * padding - kernelWidth) / stride + 1 }
    /// Rows of the column matrix: one per (input channel, kernel row, kernel column).
    public var patchSize: Int { inChannels * kernelHeight * kernelWidth }
    /// Columns of the column matrix: one per output pixel.
    public var outPixels: Int { outHeight * outWidth }
    public var inputImageCount: Int { inChannels * height * width }
    public var outputImageCount: Int { outChannels * outPixels }
    /// Floats of one image's column matrix.
    public var columnCount: Int { patchSize * outPixels }
    /// A 1×1 kernel at stride 1 without padding reads the image as its own column matrix.
    public var isPointwise: Bool { kernelHeight == 1 && kernelWidth == 1 && stride == 1 && padding == 0 }
}

/// Convolution as im2col + sgemm (Caffe's and llm.c-style CPU approach): each image's
/// patches become the columns of a [patchSize, outPixels] matrix, and the convolution is
/// weight[out, patchSize] · columns. Images are split across threads, each with its own
/// column buffer, so the products run single-threaded side by side.
public enum ConvolutionKernels {
    /// The output columns whose input column `ox·stride − padding + kernelColumn` lies
    /// inside 0..<extent (the rest read padding).
    @inlinable
    static func validOutputRange(kernelOffset k: Int, stride s: Int, padding p: Int, extent: Int, outExtent: Int) -> Range<Int> {
        // ox·s − p + k ≥ 0  ⇔  ox ≥ ⌈(p − k) / s⌉;  ox·s − p + k ≤ extent − 1  ⇔  ox ≤ ⌊(extent − 1 + p − k) / s⌋.
        let lowNumerator = p - k
        let low = lowNumerator <= 0 ? 0 : (lowNumerator + s - 1) / s
        let highNumerator = extent - 1 + p - k
        let high = highNumerator < 0 ? 0 : min(outExtent, highNumerator / s + 1)
        return low < high ? low..<high : low..<low
    }

    /// columns[(c·kh + i)·kw + j, oy·OW + ox] = image[c, oy·s − p + i, ox·s − p + j], zero
    /// where that lies in the padding.
    public static func im2col(image: UnsafePointer<Float>, columns: UnsafeMutablePointer<Float>, geometry g: ConvolutionGeometry) {
        let oh = g.outHeight, ow = g.outWidth, s = g.stride, p = g.padding
        for c in 0..<g.inChannels {
            let plane = image + c * g.height * g.width
            for ki in 0..<g.kernelHeight {
                let rows = validOutputRange(kernelOffset: ki, stride: s, padding: p, extent: g.height, outExtent: oh)
                for kj in 0..<g.kernelWidth {
                    let cols = validOutputRange(kernelOffset: kj, stride: s, padding: p, extent: g.width, outExtent: ow)
                    let row = columns + ((c * g.kernelHeight + ki) * g.kernelWidth + kj) * oh * ow
                    guard !rows.isEmpty, !cols.isEmpty else {
                        row.update(repeating: 0, count: oh * ow)
                        continue
                    }
                    // Rows wholly in the padding, above and below, in one fill each; each
                    // row between is short (an image's width), so it is copied 8 floats at
                    // a time in place rather than through three library calls.
                    row.update(repeating: 0, count: rows.lowerBound * ow)
                    let (lo, hi) = (cols.lowerBound, cols.upperBound)
                    for oy in rows {
                        let out = row + oy * ow
                        let source = plane + (oy * s - p + ki) * g.width - p + kj
                        for ox in 0..<lo { out[ox] = 0 }
                        if s == 1 {
                            copyRow(from: source + lo, to: out + lo, count: hi - lo)
                        } else {
                            for ox in lo..<hi { out[ox] = source[ox * s] }
                        }
                        for ox in hi..<ow { out[ox] = 0 }
                    }
                    (row + rows.upperBound * ow).update(repeating: 0, count: (oh - rows.upperBound) * ow)
                }
            }
        }
    }

    /// The adjoint of `im2col`: image[c, y, x] += every column entry that read it.
    public static func col2imAdding(columns: UnsafePointer<Float>, image: UnsafeMutablePointer<Float>, geometry g: ConvolutionGeometry) {
        let oh = g.outHeight, ow = g.outWidth, s = g.stride, p = g.padding
        for c in 0..<g.inChannels {
            let plane = image + c * g.height * g.width
            for ki in 0..<g.kernelHeight {
                let rows = validOutputRange(kernelOffset: ki, stride: s, padding: p, extent: g.height, outExtent: oh)
                for kj in 0..<g.kernelWidth {
                    let cols = validOutputRange(kernelOffset: kj, stride: s, padding: p, extent: g.width, outExtent: ow)
                    let row = columns + ((c * g.kernelHeight + ki) * g.kernelWidth + kj) * oh * ow
                    for oy in rows {
                        let from = row + oy * ow
                        let target = plane + (oy * s - p + ki) * g.width - p + kj
                        if s == 1 {
                            let lo = cols.lowerBound
                            let n = cols.count, source = from + lo, destination = target + lo
                            var i = 0
                            while i + 8 <= n {
                                FastMath.store(FastMath.load(destination + i) + FastMath.load(source + i), destination + i)
                                i += 8
                            }
                            while i < n {
                                destination[i] += source[i]
                                i += 1
                            }
                        } else {
                            for ox in cols { target[ox * s] += from[ox] }
                        }
                    }
                }
            }
        }
    }

    /// out[b, o, ·] = weight[o, ·] · columns(input[b]) (+ bias[o]).
    /// `columns` holds `slots` buffers of `geometry.columnCount` floats; images run on up
    /// to `slots` threads.
    public static func forward(out: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>,
                               weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                               batch: Int, geometry g: ConvolutionGeometry,
                               columns: UnsafeMutablePointer<Float>, slots: Int) {
        if ShiftedConvolution.fits(g) {
            ShiftedConvolution.forward(out: out, input: input, weight: weight, bias: bias, batch: batch, geometry: g,
                                       columns: columns, slots: slots)
            return
        }
        let k = g.patchSize, pixels = g.outPixels, o = g.outChannels
        let threads = max(1, min(slots, batch))
        Parallel.forThreadRanges(batch, threads: threads) { t, images in
            let buffer = columns + t * g.columnCount
            for b in images {
                let image = input + b * g.inputImageCount
                let result = out + b * g.outputImageCount
                let patches: UnsafePointer<Float>
                if g.isPointwise {
                    patches = image
                } else {
                    im2col(image: image, columns: buffer, geometry: g)
                    patches = UnsafePointer(buffer)
                }
                product(threads: threads, m: o, n: pixels, k: k, a: weight, lda: k, b: patches, ldb: pixels, c: result, ldc: pixels)
                if let bias {
                    for channel in 0..<o {
                        let plane = result + channel * pixels
                        let value = bias[channel]
                        for i in 0..<pixels { plane[i] += value }
                    }
                }
            }
        }
    }

    /// Backward of `forward`: dWeight += Σ_b dOut[b] · columns(input[b])ᵀ, dBias += Σ dOut
    /// per channel, and, when `dInput` is given, dInput[b] = col2im(weightᵀ · dOut[b])
    /// (overwritten, or added when `accumulateInput`).
    ///
    /// Threads other than the first sum their weight gradient in `weightPartials`
    /// (`slots − 1` buffers of outChannels·patchSize floats), added at the end. A thread's
    /// column buffer holds the patches for dWeight, then weightᵀ · dOut for dInput.
    public static func backward(dInput: UnsafeMutablePointer<Float>?, dWeight: UnsafeMutablePointer<Float>,
                                dBias: UnsafeMutablePointer<Float>?, dOut: UnsafePointer<Float>,
                                input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                                batch: Int, geometry g: ConvolutionGeometry, accumulateInput: Bool,
                                columns: UnsafeMutablePointer<Float>, weightPartials: UnsafeMutablePointer<Float>,
                                slots: Int) {
        let k = g.patchSize, pixels = g.outPixels, o = g.outChannels, weightCount = o * k
        let threads = max(1, min(slots, batch))
        if threads > 1 { weightPartials.update(repeating: 0, count: (threads - 1) * weightCount) }
        if ShiftedConvolution.fits(g) {
            ShiftedConvolution.backward(dInput: dInput, dWeight: dWeight, dOut: dOut, input: input, weight: weight, batch: batch,
                                        geometry: g, accumulateInput: accumulateInput, columns: columns,
                                        weightPartials: weightPartials, threads: threads)
        } else {
            im2colBackward(dInput: dInput, dWeight: dWeight, dOut: dOut, input: input, weight: weight, batch: batch, geometry: g,
                           accumulateInput: accumulateInput, columns: columns, weightPartials: weightPartials, threads: threads)
        }
        for t in 1..<max(threads, 1) {
            let partial = weightPartials + (t - 1) * weightCount
            Parallel.forRanges(weightCount, minPerThread: 32_768) { range in
                for i in range { dWeight[i] += partial[i] }
            }
        }
        if let dBias {
            // Channels are split across threads; each sums its channel's planes over the batch.
            Parallel.forRanges(o, minPerThread: max(1, 65_536 / max(1, batch * pixels))) { channels in
                for channel in channels {
                    var total: Float = 0
                    for b in 0..<batch { total += FastMath.sum(dOut + b * g.outputImageCount + channel * pixels, pixels) }
                    dBias[channel] += total
                }
            }
        }
    }

    /// `backward`'s ∂weight and ∂input through im2col, for the geometries `ShiftedConvolution`
    /// does not take (strided, 1 × 1, or too little column buffer for its layout).
    private static func im2colBackward(dInput: UnsafeMutablePointer<Float>?, dWeight: UnsafeMutablePointer<Float>,
                                       dOut: UnsafePointer<Float>, input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                                       batch: Int, geometry g: ConvolutionGeometry, accumulateInput: Bool,
                                       columns: UnsafeMutablePointer<Float>, weightPartials: UnsafeMutablePointer<Float>,
                                       threads: Int) {
        let k = g.patchSize, pixels = g.outPixels, o = g.outChannels, weightCount = o * k
        Parallel.forThreadRanges(batch, threads: threads) { t, images in
            let buffer = columns + t * g.columnCount
            let gradient = t == 0 ? dWeight : weightPartials + (t - 1) * weightCount
            for b in images {
                let image = input + b * g.inputImageCount
                let dResult = dOut + b * g.outputImageCount
                let patches: UnsafePointer<Float>
                if g.isPointwise {
                    patches = image
                } else {
                    im2col(image: image, columns: buffer, geometry: g)
                    patches = UnsafePointer(buffer)
                }
                product(threads: threads, transB: true, m: o, n: k, k: pixels, a: dResult, lda: pixels,
                        b: patches, ldb: pixels, beta: 1, c: gradient, ldc: k)
                guard let dInput else { continue }
                let dImage = dInput + b * g.inputImageCount
                if g.isPointwise {
                    product(threads: threads, transA: true, m: k, n: pixels, k: o, a: weight, lda: k,
                            b: dResult, ldb: pixels, beta: accumulateInput ? 1 : 0, c: dImage, ldc: pixels)
                } else {
                    product(threads: threads, transA: true, m: k, n: pixels, k: o, a: weight, lda: k,
                            b: dResult, ldb: pixels, c: buffer, ldc: pixels)
                    if !accumulateInput { dImage.update(repeating: 0, count: g.inputImageCount) }
                    col2imAdding(columns: buffer, image: dImage, geometry: g)
                }
            }
        }
    }

    /// Copies a short run (an image row), 8 floats at a time in place: for rows of a few
    /// dozen floats a library memmove costs more in the call than in the copy.
    @inline(__always)
    static func copyRow(from source: UnsafePointer<Float>, to target: UnsafeMutablePointer<Float>, count: Int) {
        var i = 0
        while i + 8 <= count {
            FastMath.store(FastMath.load(source + i), target + i)
            i += 8
        }
        while i < count {
            target[i] = source[i]
            i += 1
        }
    }

    /// One product: on this thread when images already run in parallel, else split
    /// across the pool by `BLAS.sgemm`.
    @inline(__always)
    static func product(threads: Int, transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int,
                        a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                        beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int) {
        if threads > 1 {
            BLAS.sgemmSerial(transA: transA, transB: transB, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb,
                             beta: beta, c: c, ldc: ldc)
        } else {
            BLAS.sgemm(transA: transA, transB: transB, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb,
                       beta: beta, c: c, ldc: ldc)
        }
    }
}
