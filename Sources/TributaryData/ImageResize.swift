/// Square crops of 8-bit images, as torchvision's Resize(size) + CenterCrop(size) make
/// them: the image is scaled so that its short side is `size` (the long side to the
/// nearest whole pixel), then the centre `size` × `size` is cut out. Shrinking averages
/// the source pixels each output pixel covers (a box filter, weighted by overlap);
/// growing interpolates bilinearly between pixel centres. Results are rounded to whole
/// 8-bit values, so every pixel of a loaded image is exactly k / 255.
enum ImageResize {
    /// `pixels`: height × width × channels, interleaved; the result: size × size × channels.
    static func centreCrop(_ pixels: [UInt8], width: Int, height: Int, channels: Int, size: Int) -> [UInt8] {
        let short = min(width, height)
        func resized(_ side: Int) -> Int {
            side == short ? size : max(size, Int((Double(side) * Double(size) / Double(short)).rounded()))
        }
        let (resizedWidth, resizedHeight) = (resized(width), resized(height))
        let columns = AxisWeights(source: width, resized: resizedWidth, offset: (resizedWidth - size) / 2, count: size)
        let rows = AxisWeights(source: height, resized: resizedHeight, offset: (resizedHeight - size) / 2, count: size)
        // Along the rows first (height × size × channels), then down the columns.
        var across = [Float](repeating: 0, count: height * size * channels)
        var down = [Float](repeating: 0, count: size * size * channels)
        pixels.withUnsafeBufferPointer { src in
            across.withUnsafeMutableBufferPointer { mid in
                guard let s = src.baseAddress, let m = mid.baseAddress else { return }
                for y in 0..<height {
                    for c in 0..<channels {
                        columns.resample(s + y * width * channels + c, step: channels, into: m + y * size * channels + c, step: channels)
                    }
                }
            }
        }
        across.withUnsafeBufferPointer { mid in
            down.withUnsafeMutableBufferPointer { dst in
                guard let m = mid.baseAddress, let d = dst.baseAddress else { return }
                let line = size * channels
                for x in 0..<line { rows.resample(m + x, step: line, into: d + x, step: line) }
            }
        }
        return down.map { UInt8(min(255, max(0, $0.rounded(.toNearestOrAwayFromZero)))) }
    }
}

/// Along one axis: for each of `count` output pixels (resized pixels `offset` onwards), the
/// source pixels it reads and their weights, which sum to 1.
struct AxisWeights {
    /// Output pixel i uses entries starting[i] ..< starting[i + 1].
    var starting: [Int] = [0]
    var sources: [Int] = []
    var weights: [Float] = []

    init(source: Int, resized: Int, offset: Int, count: Int) {
        let scale = Double(source) / Double(resized)  // source pixels per resized pixel
        for i in 0..<count {
            let j = Double(i + offset)
            if resized <= source {
                // Box: the resized pixel covers [j, j + 1) × scale of the source.
                let lo = j * scale, hi = (j + 1) * scale
                var p = Int(lo.rounded(.down))
                while p < source, Double(p) < hi {
                    let overlap = min(hi, Double(p + 1)) - max(lo, Double(p))
                    if overlap > 0 { sources.append(p); weights.append(Float(overlap / scale)) }
                    p += 1
                }
            } else {
                // Bilinear between the two source centres around this pixel's centre.
                let x = min(Double(source - 1), max(0, (j + 0.5) * scale - 0.5))
                let p = Int(x.rounded(.down)), t = x - Double(p)
                sources.append(p); weights.append(Float(1 - t))
                if t > 0, p + 1 < source { sources.append(p + 1); weights.append(Float(t)) }
            }
            starting.append(sources.count)
        }
    }

    /// Output pixel i (at `output + i · outStep`) is the weighted sum of the source pixels
    /// at `input + source · inStep`.
    func resample(_ input: UnsafePointer<Float>, step inStep: Int, into output: UnsafeMutablePointer<Float>, step outStep: Int) {
        resample(input, step: inStep, into: output, step: outStep) { $0 }
    }

    /// The same from 8-bit pixels (the first pass, straight from the decoded image).
    func resample(_ input: UnsafePointer<UInt8>, step inStep: Int, into output: UnsafeMutablePointer<Float>, step outStep: Int) {
        resample(input, step: inStep, into: output, step: outStep) { Float($0) }
    }

    @inline(__always)
    private func resample<Sample>(_ input: UnsafePointer<Sample>, step inStep: Int, into output: UnsafeMutablePointer<Float>,
                                  step outStep: Int, value: (Sample) -> Float) {
        starting.withUnsafeBufferPointer { first in
            sources.withUnsafeBufferPointer { from in
                weights.withUnsafeBufferPointer { weight in
                    for i in 0..<(first.count - 1) {
                        var sum: Float = 0
                        for k in first[i]..<first[i + 1] { sum += weight[k] * value(input[from[k] * inStep]) }
                        output[i * outStep] = sum
                    }
                }
            }
        }
    }
}
