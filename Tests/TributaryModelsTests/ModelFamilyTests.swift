import Foundation
import XCTest
@testable import TributaryModels
import TributaryTensor

/// The families' declarations against what their models actually do: shard groups
/// against the built parameters, planned peaks and buffer sizes against the allocator,
/// the job JSON, and absurd sizes refused rather than trapped on.
final class ModelFamilyTests: XCTestCase {
    override func setUp() { ComputeThreads.set(2) }

    static let specs: [ModelSpec] = [
        .gpt(GPTConfig(vocabSize: 13, blockSize: 16, nLayer: 1, nHead: 2, nEmbd: 16)),
        .gpt(GPTConfig(vocabSize: 40, blockSize: 24, nLayer: 3, nHead: 4, nEmbd: 48, bias: false)),
        .gpt(GPTConfig(vocabSize: 65, blockSize: 8, nLayer: 2, nHead: 1, nEmbd: 8)),
        .mlp(MLPConfig(inputFeatures: 20, hidden: [32, 16], classes: 5)),
        .mlp(MLPConfig(inputFeatures: 4, hidden: [], classes: 3)),
        .mlp(MLPConfig(inputFeatures: 784, hidden: [64], classes: 10)),
        ModelSpec(UNetConfig(imageSize: 8, inChannels: 1, baseChannels: 4, channelMultipliers: [1, 2], blocksPerLevel: 1,
                             normGroups: 2, timesteps: 50, schedule: .cosine)),
        ModelSpec(UNetConfig(imageSize: 12, inChannels: 3, baseChannels: 6, channelMultipliers: [1, 1, 2], blocksPerLevel: 2,
                             normGroups: 3, timesteps: 20, schedule: .linear, attentionResolutions: [6, 3])),
    ]

    /// Shard groups list exactly the built model's parameters (names, shapes, decay flags,
    /// order), and their sizes add up to `parameterCount`.
    func testShardGroupsEqualTheBuiltModelsParameters() throws {
        for spec in Self.specs {
            let model = try spec.build(seed: 1, allocator: TensorAllocator(budgetBytes: nil))
            let declared = spec.shardGroups.flatMap(\.parameters)
            let built = model.parameters.parameters
            XCTAssertEqual(declared.map(\.name), built.map(\.name), spec.summary)
            XCTAssertEqual(declared.map(\.shape), built.map(\.value.shape), spec.summary)
            XCTAssertEqual(declared.map(\.decays), built.map(\.decays), spec.summary)
            XCTAssertEqual(spec.shardGroups.reduce(0) { $0 + $1.elementCount }, spec.parameterCount, spec.summary)
            XCTAssertEqual(model.parameters.scalarCount, spec.parameterCount, spec.summary)
            XCTAssertEqual(Set(spec.shardGroups.map(\.name)).count, spec.shardGroups.count, "\(spec.summary): unique shard names")
        }
    }

    /// Every buffer type's `byteCount` is what its initialiser takes from the allocator.
    func testBufferByteCountsEqualWhatTheirInitialisersAllocate() throws {
        func allocated(_ make: (TensorAllocator) throws -> Any) throws -> Int {
            let a = TensorAllocator(budgetBytes: nil)
            let kept = try make(a)
            defer { withExtendedLifetime(kept) {} }
            return a.currentBytes
        }
        for (b, t, c, h) in [(1, 1, 8, 1), (3, 16, 32, 4), (2, 7, 48, 6)] {
            XCTAssertEqual(try allocated { try TransformerBlock.Activations(batch: b, sequence: t, channels: c, heads: h, allocator: $0) },
                           TransformerBlock.Activations.byteCount(batch: b, sequence: t, channels: c, heads: h))
            XCTAssertEqual(try allocated { try TransformerBlock.Scratch(batch: b, sequence: t, channels: c, allocator: $0) },
                           TransformerBlock.Scratch.byteCount(batch: b, sequence: t, channels: c,
                                                              attentionScratch: CPUKernels().attentionScratchShape(sequence: t)))
            XCTAssertEqual(try allocated { try CausalSelfAttention.Activations(batch: b, sequence: t, channels: c, heads: h, allocator: $0) },
                           CausalSelfAttention.Activations.byteCount(batch: b, sequence: t, channels: c, heads: h))
            XCTAssertEqual(try allocated { try CausalSelfAttention.Scratch(batch: b, sequence: t, channels: c, allocator: $0) },
                           CausalSelfAttention.Scratch.byteCount(batch: b, sequence: t, channels: c,
                                                                 scratch: CPUKernels().attentionScratchShape(sequence: t)))
            XCTAssertEqual(try allocated { try StreamedGPT.HeadPass(rows: b * t, channels: c, vocabulary: 11, device: CPUDevice(allocator: $0)) },
                           StreamedGPT.HeadPass.byteCount(rows: b * t, channels: c, vocabulary: 11))
        }
    }

    /// Each family's candidate plans predict the allocator's peak for the compute they
    /// describe: exactly for a GPT's streamed steps (shards from an in-memory model), and
    /// for a resident model its parameters, gradients and activations exactly, with one
    /// shard's pass on top (here nothing, as no worker codec runs).
    func testPlannedPeaksEqualTheAllocatorsPeak() async throws {
        for spec in Self.specs {
            let reference = try spec.build(seed: 2, allocator: TensorAllocator(budgetBytes: nil))
            let samples = 5
            let inputs = ExecutionPlanningInputs(unitSamples: samples, sequence: spec.sampleShape.positionsPerSample,
                                                 microBatches: [5, 3, 1], loadTransient: { _ in 0 }, gradientTransient: { _, _ in 0 })
            let candidates = spec.family.executionCandidates(inputs)
            XCTAssertFalse(candidates.isEmpty, spec.summary)
            var r = SeededRandom(seed: 3)
            let batch = spec.sampleShape.randomBatch(samples: samples, using: &r)
            // A spread of the candidates: first, last and some between (with the second, a
            // U-Net's first with blocks recomputed).
            let picked = Set([0, 1, candidates.count / 3, candidates.count / 2, candidates.count - 1])
            for i in picked.sorted() {
                let candidate = candidates[i]
                let what = "\(spec.summary), \(candidate.execution)"
                let device = CPUDevice(memoryBudgetBytes: candidate.peakBytes)
                if let step = try spec.family.makeStreamedStep(candidate.execution, device: device) {
                    guard let gpt = reference as? GPT else { return XCTFail("\(what): only a GPT streams") }
                    let source = ReferenceShardSource(model: gpt, allocator: device.allocator, transientPerElement: 0)
                    _ = try await step.step(batch, delegate: source)
                    XCTAssertEqual(device.allocator.peakBytes, candidate.peakBytes, what)
                } else {
                    guard case let .residentModel(m, recomputes) = candidate.execution else { return XCTFail(what) }
                    let model = try spec.build(seed: 2, allocator: device.allocator)
                    if recomputes {
                        guard let recomputing = model as? any BlockRecomputing else { return XCTFail("\(what): cannot recompute") }
                        recomputing.recomputesBlocks = true
                    }
                    var start = 0
                    while start < samples {
                        let end = min(samples, start + m)
                        _ = try model.forwardBackward(batch.samples(start, end), lossScale: 1)
                        start = end
                    }
                    XCTAssertEqual(device.allocator.peakBytes, candidate.peakBytes, what)
                }
            }
        }
    }


    /// The job JSON is what it was before families: the same keys, and specs round-trip.
    func testJobJSONIsUnchanged() throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let gpt = ModelSpec.gpt(GPTConfig(vocabSize: 65, blockSize: 16, nLayer: 2, nHead: 2, nEmbd: 32, bias: false))
        XCTAssertEqual(String(decoding: try encoder.encode(gpt), as: UTF8.self),
                       #"{"model_args":{"bias":false,"block_size":16,"n_embd":32,"n_head":2,"n_layer":2,"vocab_size":65},"model_type":"gpt"}"#)
        let mlp = ModelSpec.mlp(MLPConfig(inputFeatures: 784, hidden: [128, 64], classes: 10))
        XCTAssertEqual(String(decoding: try encoder.encode(mlp), as: UTF8.self),
                       #"{"model_args":{"classes":10,"hidden":[128,64],"input_features":784},"model_type":"mlp"}"#)
        for spec in Self.specs {
            let back = try JSONDecoder().decode(ModelSpec.self, from: try encoder.encode(spec))
            XCTAssertEqual(back, spec)
            XCTAssertEqual(back.modelType, spec.modelType)
        }
        XCTAssertEqual(ModelSpec(GPTConfig(vocabSize: 2, blockSize: 1, nLayer: 1, nHead: 1, nEmbd: 1)),
                       .gpt(GPTConfig(vocabSize: 2, blockSize: 1, nLayer: 1, nHead: 1, nEmbd: 1)))
        XCTAssertNotEqual(Self.specs[0], Self.specs[3])
        XCTAssertThrowsError(try JSONDecoder().decode(ModelSpec.self, from: Data(#"{"model_type":"llama","model_args":{}}"#.utf8))) {
            XCTAssertTrue("\($0)".contains("unknown model_type 'llama' (expected gpt or mlp or unet)"), "\($0)")
        }
    }

    /// Sizes a hostile coordinator could send are refused with a clear error (no trap),
    /// and nothing downstream of a refused spec traps either.
    func testAbsurdSizesAreRefusedNotTrappedOn() throws {
        let absurd: [ModelSpec] = [
            .gpt(GPTConfig(vocabSize: 65, blockSize: 64, nLayer: 10_000_000, nHead: 4, nEmbd: 128)),
            .gpt(GPTConfig(vocabSize: 65, blockSize: 64, nLayer: 4, nHead: 1, nEmbd: 1 << 31)),
            .gpt(GPTConfig(vocabSize: Int(Int32.max), blockSize: 64, nLayer: 4, nHead: 1, nEmbd: 1 << 20)),
            .gpt(GPTConfig(vocabSize: 65, blockSize: 1 << 31, nLayer: 1, nHead: 1, nEmbd: 8)),
            .gpt(GPTConfig(vocabSize: 65, blockSize: Int.max, nLayer: 1, nHead: 1, nEmbd: Int.max)),
            .mlp(MLPConfig(inputFeatures: 1 << 31, hidden: [1 << 31], classes: 10)),
            .mlp(MLPConfig(inputFeatures: Int.max, hidden: [Int.max], classes: Int.max)),
            .mlp(MLPConfig(inputFeatures: 4, hidden: Array(repeating: 1, count: 20_000), classes: 2)),
            ModelSpec(UNetConfig(imageSize: Int.max, baseChannels: Int.max, channelMultipliers: [Int.max])),
            ModelSpec(UNetConfig(imageSize: 4096, inChannels: 64, baseChannels: 65_536, channelMultipliers: [64, 64])),
            ModelSpec(UNetConfig(blocksPerLevel: -1)),
            ModelSpec(UNetConfig(channelMultipliers: [1, 0])),
        ]
        for spec in absurd {
            XCTAssertThrowsError(try spec.validate()) { error in
                guard case let ModelError.invalidConfiguration(why) = error else { return XCTFail("\(error)") }
                XCTAssertFalse(why.isEmpty)
            }
            XCTAssertFalse(spec.summary.isEmpty)
            let inputs = ExecutionPlanningInputs(unitSamples: 1 << 40, sequence: 1, microBatches: [1 << 40],
                                                 loadTransient: { _ in 0 }, gradientTransient: { _, _ in 0 })
            XCTAssertTrue(spec.family.executionCandidates(inputs).isEmpty, spec.summary)
        }
        // A sane model with an absurd unit is not planned either.
        let small = ModelSpec.gpt(GPTConfig(vocabSize: 13, blockSize: 16, nLayer: 1, nHead: 2, nEmbd: 16))
        XCTAssertTrue(small.family.executionCandidates(ExecutionPlanningInputs(
            unitSamples: Int.max / 2, sequence: 16, microBatches: [1], loadTransient: { _ in 0 }, gradientTransient: { _, _ in 0 })).isEmpty)
    }

    /// A family that is not registered still works through the protocol alone: what a new
    /// family gets before its one registration line, which only adds decoding by name.
    func testAFamilyWorksThroughTheProtocolAlone() throws {
        let spec = ModelSpec(ProbeFamily(features: 6, classes: 3))
        guard case let .registered(family) = spec else { return XCTFail("\(spec)") }
        XCTAssertEqual(family.summary, "probe 6→3")
        XCTAssertEqual(spec, ModelSpec(ProbeFamily(features: 6, classes: 3)))
        XCTAssertNotEqual(spec, ModelSpec(ProbeFamily(features: 6, classes: 4)))
        XCTAssertNotEqual(spec, .mlp(MLPConfig(inputFeatures: 6, hidden: [], classes: 3)))
        let json = String(decoding: try JSONEncoder().encode(spec), as: UTF8.self)
        XCTAssertTrue(json.contains(#""model_type":"probe""#), json)
        XCTAssertThrowsError(try JSONDecoder().decode(ModelSpec.self, from: Data(json.utf8)), "not registered")

        let model = try spec.build(seed: 1, allocator: TensorAllocator(budgetBytes: nil))
        XCTAssertEqual(spec.shardGroups.flatMap(\.parameters).map(\.name), model.parameters.parameters.map(\.name))
        let inputs = ExecutionPlanningInputs(unitSamples: 4, sequence: 1, microBatches: [4, 2, 1],
                                             loadTransient: { _ in 0 }, gradientTransient: { _, _ in 0 })
        var r = SeededRandom(seed: 1)
        let batch = spec.sampleShape.randomBatch(samples: 4, using: &r)
        for candidate in spec.family.executionCandidates(inputs) {
            guard case let .residentModel(m, _) = candidate.execution else { return XCTFail("\(candidate)") }
            let device = CPUDevice(memoryBudgetBytes: candidate.peakBytes)
            let held = try spec.build(seed: 1, allocator: device.allocator)
            _ = try held.forwardBackward(batch.samples(0, m), lossScale: 1)
            XCTAssertEqual(device.allocator.peakBytes, candidate.peakBytes, "\(candidate)")
        }
    }
}

/// A one-layer softmax classifier as a family of its own, built from the MLP's parts.
struct ProbeFamily: ModelFamily {
    static let modelType = "probe"
    var features: Int
    var classes: Int

    private var asMLP: MLPConfig { MLPConfig(inputFeatures: features, hidden: [], classes: classes) }
    func validate() throws(ModelError) { try asMLP.validate() }
    var parameterCount: Int { asMLP.parameterCount }
    var summary: String { "probe \(features)→\(classes)" }
    func build(seed: UInt64, device: any ComputeDevice) throws -> any TrainableModel {
        try MLPClassifier(config: asMLP, seed: seed, device: device)
    }
    var shardGroups: [ModelShardGroup] { asMLP.shardGroups }
    var sampleShape: ModelSampleShape { .features(count: features, classes: classes) }
    func executionCandidates(_ inputs: ExecutionPlanningInputs) -> [ExecutionCandidate] {
        ModelExecution.residentCandidates(parameterCount: parameterCount, shardGroups: shardGroups, inputs: inputs) {
            MLPClassifier.activationBytes(config: asMLP, batch: $0)
        }
    }
    func estimatedCost(of execution: ModelExecution, _ inputs: ExecutionPlanningInputs) -> Double {
        asMLP.estimatedCost(of: execution, inputs)
    }
}
