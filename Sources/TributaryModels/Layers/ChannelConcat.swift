import TributaryTensor

/// Channel concatenation of two NCHW images with the same batch, height and width:
/// [B, C1, H, W] and [B, C2, H, W] → [B, C1 + C2, H, W] (`torch.cat([a, b], dim=1)`, how
/// the U-Net's up path joins its skip connections).
public enum ChannelConcat {
    public static func outputShape(_ first: ImageShape, _ second: ImageShape) -> [Int] {
        [first.batch, first.channels + second.channels, first.height, first.width]
    }

    public static func forward(_ first: Tensor, _ second: Tensor, into out: Tensor) throws(ModelError) {
        let (a, b) = try checkShapes(first, second, out)
        let firstPlane = a.channels * a.height * a.width, secondPlane = b.channels * b.height * b.width
        for image in 0..<a.batch {
            let o = out.data + image * (firstPlane + secondPlane)
            o.update(from: first.data + image * firstPlane, count: firstPlane)
            (o + firstPlane).update(from: second.data + image * secondPlane, count: secondPlane)
        }
    }

    /// Splits dOut into the two inputs' gradients, written or (with `accumulate`) added.
    public static func backward(dOut: Tensor, dFirst: Tensor, dSecond: Tensor, accumulate: Bool = false) throws(ModelError) {
        let (a, b) = try checkShapes(dFirst, dSecond, dOut)
        let firstPlane = a.channels * a.height * a.width, secondPlane = b.channels * b.height * b.width
        for image in 0..<a.batch {
            let o = dOut.data + image * (firstPlane + secondPlane)
            split(o, into: dFirst.data + image * firstPlane, count: firstPlane, accumulate: accumulate)
            split(o + firstPlane, into: dSecond.data + image * secondPlane, count: secondPlane, accumulate: accumulate)
        }
    }

    private static func split(_ source: UnsafeMutablePointer<Float>, into target: UnsafeMutablePointer<Float>, count: Int,
                              accumulate: Bool) {
        if accumulate {
            for i in 0..<count { target[i] += source[i] }
        } else {
            target.update(from: source, count: count)
        }
    }

    private static func checkShapes(_ first: Tensor, _ second: Tensor, _ out: Tensor) throws(ModelError) -> (ImageShape, ImageShape) {
        let a = try ImageShape(first, "concat first input"), b = try ImageShape(second, "concat second input")
        guard a.batch == b.batch, a.height == b.height, a.width == b.width else {
            throw .batchShape("concatenated images must share batch, height and width: \(first.shape) and \(second.shape)")
        }
        guard out.shape == outputShape(a, b) else { throw .batchShape("concat output \(out.shape), expected \(outputShape(a, b))") }
        return (a, b)
    }
}
