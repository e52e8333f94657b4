import Foundation
import XCTest
import TributaryCheckpoint
import TributaryData
import TributaryModels
import TributaryOptim
import TributaryTensor

/// The checkpoint store and loader: round trips, nanoGPT-compatible layout, corruption, atomicity.
final class CheckpointTests: XCTestCase {
    var dir = ""

    override func setUpWithError() throws {
        ComputeThreads.set(2)
        dir = NSTemporaryDirectory() + "tributary-checkpoint-tests-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    override func tearDown() {
        try? FileManager.default.removeItem(atPath: dir)
    }

    // MARK: Fixtures

    static let vocabulary: CharacterVocabulary = CharacterVocabulary(text: "0123456789+=\n")
    static let gptConfig = GPTConfig(vocabSize: 13, blockSize: 16, nLayer: 2, nHead: 2, nEmbd: 32)
    static let mlpConfig = MLPConfig(inputFeatures: 20, hidden: [16, 8], classes: 5)

    /// A deterministic token batch of 4 × 16 over the 13-symbol vocabulary.
    static func tokenBatch(vocab: Int = 13, batch: Int = 4, sequence: Int = 16) -> ModelBatch {
        var rng = SeededRandom(seed: 5)
        let x = (0..<(batch * sequence)).map { _ in Int32(rng.nextIndex(below: vocab)) }
        let y = (0..<(batch * sequence)).map { _ in Int32(rng.nextIndex(below: vocab)) }
        return .tokens(inputs: x, targets: y, batch: batch, sequence: sequence)
    }

    static func featureBatch(_ cfg: MLPConfig = mlpConfig, batch: Int = 6) -> ModelBatch {
        var rng = SeededRandom(seed: 6)
        let x = (0..<(batch * cfg.inputFeatures)).map { _ in rng.nextGaussian() }
        let y = (0..<batch).map { _ in Int32(rng.nextIndex(below: cfg.classes)) }
        return .features(inputs: x, targets: y, batch: batch)
    }

    static func values(_ model: any TrainableModel) -> [[Float]] {
        model.parameters.parameters.map { $0.value.toArray() }
    }

    static func bits(_ model: any TrainableModel) -> [[UInt32]] {
        model.parameters.parameters.map { $0.value.toArray().map(\.bitPattern) }
    }

    /// Saves a GPT built from `seed` (with AdamW state after one step) as `step` in `store`.
    @discardableResult
    func saveGPT(_ store: CheckpointStore, step: Int, seed: UInt64 = 11, config: GPTConfig = gptConfig) throws -> (GPT, String) {
        let model = try GPT(config: config, seed: seed)
        let optimizer = try AdamW(parameters: model.parameters, weightDecay: 0.1)
        _ = try model.forwardBackward(Self.tokenBatch(vocab: config.vocabSize, sequence: config.blockSize), lossScale: 1)
        optimizer.step(model.parameters, learningRate: 1e-3)
        let path = try store.save(step: step, spec: .gpt(config), model: model, vocabulary: Self.vocabulary,
                                  optimizer: optimizer, trainerState: Array(#"{"step":\#(step)}"#.utf8))
        return (model, path)
    }

    func bytes(_ path: String) throws -> [UInt8] { Array(try Data(contentsOf: URL(fileURLWithPath: path))) }
    /// Writes a deliberately damaged file. The hashes of its checkpoint are brought up to
    /// date, so each test reaches the check it is about (the checks that protect a checkpoint
    /// written before hashes existed); `CheckpointIntegrityTests` covers the hashes.
    func write(_ bytes: [UInt8], _ path: String) throws {
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        try rehash(containing: path)
    }

    func rehash(containing path: String) throws {
        let dir = URL(fileURLWithPath: path).deletingLastPathComponent().path
        if FileManager.default.fileExists(atPath: "\(dir)/\(CheckpointIntegrity.sumsFile)") {
            try CheckpointIntegrity.writeSums(in: dir)
        }
    }

    /// Asserts that `body` throws a CheckpointError whose one-line description contains every
    /// fragment; returns the error.
    @discardableResult
    func assertCheckpointError(_ fragments: [String], file: StaticString = #filePath, line: UInt = #line,
                               _ body: () throws -> Void) -> CheckpointError? {
        do {
            try body()
            XCTFail("expected a CheckpointError mentioning \(fragments), nothing was thrown", file: file, line: line)
        } catch let error as CheckpointError {
            for f in fragments {
                XCTAssertTrue(error.description.contains(f), "\"\(error)\" does not mention \"\(f)\"", file: file, line: line)
            }
            XCTAssertFalse(error.description.contains("\n"), "one line: \(error)", file: file, line: line)
            return error
        } catch {
            XCTFail("expected a CheckpointError, got \(type(of: error)): \(error)", file: file, line: line)
        }
        return nil
    }

    // MARK: (a) Round trip

    func testGPTRoundTripGivesIdenticalLossInAModelBuiltFromAnotherSeed() throws {
        let store = CheckpointStore(directory: dir)
        let (original, path) = try saveGPT(store, step: 7)
        XCTAssertEqual(path, "\(dir)/step-00000007")
        let batch = Self.tokenBatch()
        let expected = try original.evaluate(batch)

        let loaded = try LoadedCheckpoint.read(dir)
        XCTAssertEqual(loaded.path, path)
        XCTAssertEqual(loaded.config.step, 7)
        XCTAssertEqual(loaded.config.model, .gpt(Self.gptConfig))
        XCTAssertEqual(loaded.config.vocabulary, Self.vocabulary)
        XCTAssertEqual(loaded.trainerState, Array(#"{"step":7}"#.utf8))
        let fresh = try loaded.config.model.build(seed: 999)
        let freshLoss = try fresh.evaluate(batch).loss
        XCTAssertNotEqual(freshLoss, expected.loss, "another seed must give another model, or the test proves nothing")

        try loaded.loadWeights(into: fresh.parameters)
        XCTAssertEqual(Self.bits(fresh), Self.bits(original))
        let got = try fresh.evaluate(batch)
        XCTAssertEqual(got.loss, expected.loss)  // exactly: same weights, same kernels
        XCTAssertEqual(got, expected)
        XCTAssertEqual(got.predictions, 64)
    }

    func testMLPRoundTripGivesIdenticalLossInAModelBuiltFromAnotherSeed() throws {
        let store = CheckpointStore(directory: dir)
        let original = try MLPClassifier(config: Self.mlpConfig, seed: 3)
        let sgd = try SGD(parameters: original.parameters, momentum: 0.9)
        _ = try original.forwardBackward(Self.featureBatch(), lossScale: 1)
        sgd.step(original.parameters, learningRate: 0.1)
        try store.save(step: 1, spec: .mlp(Self.mlpConfig), model: original, vocabulary: nil, optimizer: sgd, trainerState: nil)

        let loaded = try LoadedCheckpoint.read(dir)
        XCTAssertEqual(loaded.config.model, .mlp(Self.mlpConfig))
        XCTAssertNil(loaded.config.vocabulary)
        XCTAssertNil(loaded.trainerState)
        XCTAssertEqual(loaded.optimizerState?.metadata["kind"], "sgd")
        XCTAssertEqual(loaded.optimizerState?.metadata["step"], "1")
        // MLP checkpoints name layers as PyTorch's nn.Sequential stored as `net`.
        XCTAssertEqual(Set(loaded.weights.entries.map(\.name)), ["net.0.weight", "net.0.bias", "net.2.weight", "net.2.bias",
                                                                 "net.4.weight", "net.4.bias"])
        XCTAssertEqual(loaded.weights.entry(named: "net.0.weight")?.shape, [16, 20])
        XCTAssertEqual(loaded.weights.entry(named: "net.4.weight")?.shape, [5, 8])

        let batch = Self.featureBatch()
        let expected = try original.evaluate(batch)
        let fresh = try loaded.config.model.build(seed: 4)
        XCTAssertNotEqual(try fresh.evaluate(batch).loss, expected.loss)
        try loaded.loadWeights(into: fresh.parameters)
        XCTAssertEqual(try fresh.evaluate(batch).loss, expected.loss)
        XCTAssertEqual(Self.bits(fresh), Self.bits(original))

        // Optimizer state round trip: momentum buffers come back into a fresh SGD.
        let sgd2 = try SGD(parameters: fresh.parameters, momentum: 0.9)
        try loaded.loadOptimizer(into: sgd2)
        XCTAssertEqual(sgd2.stepCount, 1)
        XCTAssertEqual(sgd2.stateTensors().map { $0.tensor.toArray() }, sgd.stateTensors().map { $0.tensor.toArray() })
        XCTAssertEqual(sgd2.stateTensors().map(\.name).first, "net.0.weight.momentum_buffer")
    }

    // MARK: (c) nanoGPT layout

    /// nanoGPT's `GPT(config).state_dict()` (PyTorch ≥ 2 with flash attention, so no `attn.bias`
    /// mask buffer), with shapes as PyTorch stores Linear weights: [out, in].
    static func nanoGPTStateDict(_ c: GPTConfig) -> [String: [Int]] {
        let C = c.nEmbd
        var keys: [String: [Int]] = [
            "transformer.wte.weight": [c.vocabSize, C],
            "transformer.wpe.weight": [c.blockSize, C],
            "transformer.ln_f.weight": [C],
            "lm_head.weight": [c.vocabSize, C],
        ]
        if c.bias { keys["transformer.ln_f.bias"] = [C] }
        for l in 0..<c.nLayer {
            let p = "transformer.h.\(l)"
            keys["\(p).ln_1.weight"] = [C]
            keys["\(p).attn.c_attn.weight"] = [3 * C, C]
            keys["\(p).attn.c_proj.weight"] = [C, C]
            keys["\(p).ln_2.weight"] = [C]
            keys["\(p).mlp.c_fc.weight"] = [4 * C, C]
            keys["\(p).mlp.c_proj.weight"] = [C, 4 * C]
            if c.bias {
                keys["\(p).ln_1.bias"] = [C]
                keys["\(p).attn.c_attn.bias"] = [3 * C]
                keys["\(p).attn.c_proj.bias"] = [C]
                keys["\(p).ln_2.bias"] = [C]
                keys["\(p).mlp.c_fc.bias"] = [4 * C]
                keys["\(p).mlp.c_proj.bias"] = [C]
            }
        }
        return keys
    }

    func testGPTSafetensorsHoldsExactlyNanoGPTStateDict() throws {
        for bias in [true, false] {
            let cfg = GPTConfig(vocabSize: 13, blockSize: 16, nLayer: 2, nHead: 2, nEmbd: 32, bias: bias)
            let storeDir = "\(dir)/bias-\(bias)"
            let (model, path) = try saveGPT(CheckpointStore(directory: storeDir), step: 3, config: cfg)
            let file = try SafeTensorsFile.read(path: "\(path)/\(CheckpointStore.modelFile)")
            let expected = Self.nanoGPTStateDict(cfg)
            XCTAssertEqual(Set(file.entries.map(\.name)), Set(expected.keys), "bias \(bias)")
            XCTAssertEqual(file.entries.count, bias ? 4 + 1 + 12 * 2 : 4 + 6 * 2)
            for entry in file.entries {
                XCTAssertEqual(entry.shape, expected[entry.name], entry.name)
                XCTAssertEqual(entry.dtype, .F32, entry.name)
                // Every stored tensor is the model's parameter (lm_head: the tied embedding).
                let source = entry.name == "lm_head.weight" ? "transformer.wte.weight" : entry.name
                XCTAssertEqual(try entry.floats(), model.parameters[source]?.value.toArray(), entry.name)
            }
            XCTAssertEqual(file.entry(named: "transformer.h.0.attn.c_attn.weight")?.shape, [96, 32])
            XCTAssertEqual(file.entry(named: "transformer.h.1.mlp.c_proj.weight")?.shape, [32, 128])
            let head = try XCTUnwrap(file.entry(named: "lm_head.weight"))
            let wte = try XCTUnwrap(file.entry(named: "transformer.wte.weight"))
            XCTAssertEqual(head.bytes, wte.bytes)
            XCTAssertEqual(file.metadata["format"], "pt")
            XCTAssertEqual(file.metadata["step"], "3")
            // The values are what was trained, not the initialisation: ln_1 gains moved off 1.
            XCTAssertNotEqual(try file.entry(named: "transformer.h.0.ln_1.weight")?.floats(), [Float](repeating: 1, count: 32))
        }
    }

    func testConfigJSONIsNanoGPTStyle() throws {
        let (_, path) = try saveGPT(CheckpointStore(directory: dir), step: 12)
        let json = try JSONSerialization.jsonObject(with: Data(try bytes("\(path)/\(CheckpointStore.configFile)")))
        let top = try XCTUnwrap(json as? [String: Any])
        XCTAssertEqual(top["model_type"] as? String, "gpt")
        let args = try XCTUnwrap(top["model_args"] as? [String: Any])
        XCTAssertEqual(args["n_layer"] as? Int, 2)
        XCTAssertEqual(args["n_head"] as? Int, 2)
        XCTAssertEqual(args["n_embd"] as? Int, 32)
        XCTAssertEqual(args["block_size"] as? Int, 16)
        XCTAssertEqual(args["vocab_size"] as? Int, 13)
        XCTAssertEqual(args["bias"] as? Bool, true)
        XCTAssertEqual(Set(args.keys), ["n_layer", "n_head", "n_embd", "block_size", "vocab_size", "bias"])
        XCTAssertEqual(top["step"] as? Int, 12)
        XCTAssertEqual(top["tributary_checkpoint_format"] as? Int, 1)
        let vocab = try XCTUnwrap(top["vocabulary"] as? [String: Any])
        XCTAssertEqual(vocab["symbols"] as? [String], ["\n", "+", "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "="])
        // The other files of a step directory.
        let names = try FileManager.default.contentsOfDirectory(atPath: path).sorted()
        XCTAssertEqual(names, ["SHA256SUMS", "config.json", "model.safetensors", "optimizer.safetensors", "trainer_state.json"])
        let opt = try SafeTensorsFile.read(path: "\(path)/\(CheckpointStore.optimizerFile)")
        XCTAssertEqual(opt.metadata, ["kind": "adamw", "step": "1"])
        XCTAssertEqual(opt.entry(named: "transformer.h.0.attn.c_attn.weight.exp_avg")?.shape, [96, 32])
        XCTAssertEqual(opt.entry(named: "transformer.wte.weight.exp_avg_sq")?.shape, [13, 32])
        XCTAssertEqual(opt.entries.count, 2 * (2 + 2 * 12 + 2))
        XCTAssertEqual(String(decoding: try bytes("\(dir)/latest"), as: UTF8.self), "step-00000012\n")
    }

    // MARK: (d) Corrupt or mismatched checkpoints

    func testTruncatedModelFileIsCorrupt() throws {
        let (_, path) = try saveGPT(CheckpointStore(directory: dir), step: 1)
        let file = "\(path)/\(CheckpointStore.modelFile)"
        let full = try bytes(file)
        try write(Array(full.prefix(full.count / 2)), file)
        let e = assertCheckpointError(["unusable", "model.safetensors", "outside the"]) { _ = try LoadedCheckpoint.read(dir) }
        if case .corrupt(let p, _)? = e { XCTAssertEqual(p, path) } else { XCTFail("\(String(describing: e))") }
        try write(Array(full.prefix(5)), file)
        assertCheckpointError(["model.safetensors", "5 bytes", "shorter than the 8-byte header"]) { _ = try LoadedCheckpoint.read(dir) }
        try write(Array(full.prefix(100)), file)
        assertCheckpointError(["model.safetensors", "runs past the end"]) { _ = try LoadedCheckpoint.read(dir) }
        try write([], file)
        assertCheckpointError(["model.safetensors", "0 bytes"]) { _ = try LoadedCheckpoint.read(dir) }
        try FileManager.default.removeItem(atPath: file)
        assertCheckpointError(["model.safetensors", "is missing"]) { _ = try LoadedCheckpoint.read(dir) }
        try FileManager.default.removeItem(atPath: "\(path)/\(CheckpointIntegrity.sumsFile)")
        assertCheckpointError(["model.safetensors", "cannot open"]) { _ = try LoadedCheckpoint.read(dir) }
    }

    /// The offset of `needle` in `haystack`.
    func offset(of needle: String, in haystack: [UInt8]) throws -> Int {
        let n = Array(needle.utf8)
        for i in 0...(haystack.count - n.count) where haystack[i] == n[0] && Array(haystack[i..<(i + n.count)]) == n {
            return i
        }
        throw XCTSkip("\(needle) not found")
    }

    func testFlippedHeaderBytesAreCorrupt() throws {
        let (_, path) = try saveGPT(CheckpointStore(directory: dir), step: 1)
        let file = "\(path)/\(CheckpointStore.modelFile)"
        let good = try bytes(file)

        var b = good
        XCTAssertEqual(b[8], UInt8(ascii: "{"))
        b[8] = UInt8(ascii: "[")  // the JSON object's opening brace
        try write(b, file)
        assertCheckpointError(["model.safetensors", "does not start with a JSON object"]) { _ = try LoadedCheckpoint.read(dir) }

        b = good
        b[7] = 0x01  // the header length's top byte: 2^56 bytes
        try write(b, file)
        assertCheckpointError(["model.safetensors", "exceeds the 100000000-byte limit"]) { _ = try LoadedCheckpoint.read(dir) }

        // The colon after a tensor name turned into a letter: not JSON any more.
        b = good
        let name = try offset(of: #""transformer.wpe.weight":"#, in: good)
        b[name + 24] = UInt8(ascii: "x")
        try write(b, file)
        assertCheckpointError(["model.safetensors", "not valid JSON"]) { _ = try LoadedCheckpoint.read(dir) }

        // A shape digit changed: "shape":[13,32] → [13,33] no longer matches its byte range.
        b = good
        let entry = #""transformer.wte.weight":{"dtype":"F32","shape":[13,32]"#
        let digit = try offset(of: entry, in: good) + entry.utf8.count - 2
        XCTAssertEqual(b[digit], UInt8(ascii: "2"))
        b[digit] = UInt8(ascii: "3")
        try write(b, file)
        assertCheckpointError(["model.safetensors", "transformer.wte.weight", "spans 1664 bytes", "[13, 33]"]) {
            _ = try LoadedCheckpoint.read(dir)
        }
        // And the untouched file still reads.
        try write(good, file)
        XCTAssertEqual(try LoadedCheckpoint.read(dir).config.step, 1)
    }

    func testGarbageOrInvalidConfigIsCorrupt() throws {
        let (_, path) = try saveGPT(CheckpointStore(directory: dir), step: 1)
        let config = "\(path)/\(CheckpointStore.configFile)"
        let good = try bytes(config)

        try write(Array("this is not json {".utf8), config)
        assertCheckpointError(["unusable", "config.json is not a valid checkpoint config"]) { _ = try LoadedCheckpoint.read(dir) }

        try write(Array(#"{"model_type":"llama","model_args":{},"step":1}"#.utf8), config)
        assertCheckpointError(["config.json", "unknown model_type 'llama'"]) { _ = try LoadedCheckpoint.read(dir) }

        try write(Array(#"{"model_type":"gpt","model_args":{"n_layer":2},"step":1}"#.utf8), config)
        assertCheckpointError(["config.json is not a valid checkpoint config"]) { _ = try LoadedCheckpoint.read(dir) }

        // Valid JSON describing an impossible model.
        let text = String(decoding: good, as: UTF8.self).replacingOccurrences(of: #""n_head" : 2"#, with: #""n_head" : 3"#)
        XCTAssertNotEqual(Array(text.utf8), good)
        try write(Array(text.utf8), config)
        assertCheckpointError(["unusable", "n_embd (32) must be divisible by n_head (3)"]) { _ = try LoadedCheckpoint.read(dir) }

        try FileManager.default.removeItem(atPath: config)
        let e = assertCheckpointError(["no checkpoint at \(dir)"]) { _ = try LoadedCheckpoint.read(dir) }
        XCTAssertEqual(e, .notFound(dir))
    }

    func testBadLatestPointer() throws {
        try saveGPT(CheckpointStore(directory: dir), step: 1)
        try write(Array("../../etc\n".utf8), "\(dir)/latest")
        assertCheckpointError(["latest", "not a step directory"]) { _ = try LoadedCheckpoint.read(dir) }
        try write(Array("step-00000099\n".utf8), "\(dir)/latest")
        assertCheckpointError(["no checkpoint at"]) { _ = try LoadedCheckpoint.read(dir) }
        assertCheckpointError(["no checkpoint at \(dir)/nothing-here"]) { _ = try LoadedCheckpoint.read("\(dir)/nothing-here") }
        XCTAssertNil(try CheckpointStore(directory: "\(dir)/nothing-here").latestPath())
    }

    /// Rewrites one tensor of the model file in place (same shape), returning the new file.
    func rewriteTensor(_ path: String, _ name: String, _ edit: (inout [Float]) -> Void) throws {
        let file = "\(path)/\(CheckpointStore.modelFile)"
        var st = try SafeTensorsFile.read(path: file)
        let i = try XCTUnwrap(st.entries.firstIndex { $0.name == name })
        var values = try st.entries[i].floats()
        edit(&values)
        st.entries[i] = SafeTensorsEntry(name: name, shape: st.entries[i].shape, floats: values)
        try st.write(to: file)
        try rehash(containing: file)
    }

    func testNonFiniteWeightsAreRefusedBeforeAnythingIsCopied() throws {
        let (_, path) = try saveGPT(CheckpointStore(directory: dir), step: 1)
        // transformer.wte.weight is the first parameter loadWeights visits.
        XCTAssertEqual(try GPT(config: Self.gptConfig).parameters.parameters.first?.name, "transformer.wte.weight")
        for bad in [Float.nan, .infinity, -.infinity] {
            try rewriteTensor(path, "transformer.wte.weight") { $0[17] = bad }
            let loaded = try LoadedCheckpoint.read(dir)  // reading checks structure, not values
            let target = try GPT(config: Self.gptConfig, seed: 500)
            let before = Self.bits(target)
            assertCheckpointError(["unusable", "tensor 'transformer.wte.weight' contains NaN or infinity"]) {
                try loaded.loadWeights(into: target.parameters)
            }
            XCTAssertEqual(Self.bits(target), before, "a refused load must leave the model as it was")
        }
    }

    func testWrongShapeOrMissingTensorIsRefused() throws {
        let (_, path) = try saveGPT(CheckpointStore(directory: dir), step: 1)
        let loaded = try LoadedCheckpoint.read(dir)

        // Another vocabulary: the first tensor already differs, nothing is copied.
        let otherVocab = try GPT(config: GPTConfig(vocabSize: 14, blockSize: 16, nLayer: 2, nHead: 2, nEmbd: 32), seed: 9)
        let before = Self.bits(otherVocab)
        assertCheckpointError(["tensor 'transformer.wte.weight' has shape [13, 32], expected [14, 32]"]) {
            try loaded.loadWeights(into: otherVocab.parameters)
        }
        XCTAssertEqual(Self.bits(otherVocab), before)

        // An MLP cannot take GPT weights.
        let mlp = try MLPClassifier(config: Self.mlpConfig)
        assertCheckpointError(["tensor 'net.0.weight' is missing"]) { try loaded.loadWeights(into: mlp.parameters) }

        // A tensor dropped from the file (the config still says GPT).
        let file = "\(path)/\(CheckpointStore.modelFile)"
        var st = try SafeTensorsFile.read(path: file)
        st.entries.removeAll { $0.name == "transformer.wte.weight" }
        try st.write(to: file)
        try rehash(containing: file)
        let target = try GPT(config: Self.gptConfig, seed: 9)
        let targetBefore = Self.bits(target)
        assertCheckpointError(["tensor 'transformer.wte.weight' is missing"]) {
            try LoadedCheckpoint.read(dir).loadWeights(into: target.parameters)
        }
        XCTAssertEqual(Self.bits(target), targetBefore)

        // A tensor stored with a wrong shape of the same size.
        st = try SafeTensorsFile.read(path: file)
        let wpe = try XCTUnwrap(st.entry(named: "transformer.wpe.weight"))
        st.entries.append(SafeTensorsEntry(name: "transformer.wte.weight", shape: [32, 13], floats: [Float](repeating: 0.5, count: 416)))
        try st.write(to: file)
        try rehash(containing: file)
        XCTAssertEqual(wpe.shape, [16, 32])
        assertCheckpointError(["tensor 'transformer.wte.weight' has shape [32, 13], expected [13, 32]"]) {
            try LoadedCheckpoint.read(dir).loadWeights(into: target.parameters)
        }
        XCTAssertEqual(Self.bits(target), targetBefore)

        // F16 where F32 is expected: refused with the dtype named.
        st = try SafeTensorsFile.read(path: file)
        st.entries.removeAll { $0.name == "transformer.wte.weight" }
        st.entries.append(SafeTensorsEntry(name: "transformer.wte.weight", dtype: .F16, shape: [13, 32],
                                           bytes: [UInt8](repeating: 0, count: 13 * 32 * 2)))
        try st.write(to: file)
        try rehash(containing: file)
        assertCheckpointError(["transformer.wte.weight", "F16, not F32"]) {
            try LoadedCheckpoint.read(dir).loadWeights(into: target.parameters)
        }
        XCTAssertEqual(Self.bits(target), targetBefore)
    }

    /// `loadWeights` validates and copies tensor by tensor. When a *later* tensor is bad, the
    /// earlier ones have already been overwritten, so the model is left half loaded. The code
    /// does not promise otherwise; this test records what happens (reported, not asserted).
    func testBadLaterTensorAndPartialCopy() throws {
        let (saved, path) = try saveGPT(CheckpointStore(directory: dir), step: 1)
        try rewriteTensor(path, "transformer.ln_f.weight") { $0[0] = .nan }
        let target = try GPT(config: Self.gptConfig, seed: 77)
        let before = Self.bits(target)
        assertCheckpointError(["tensor 'transformer.ln_f.weight' contains NaN or infinity"]) {
            try LoadedCheckpoint.read(dir).loadWeights(into: target.parameters)
        }
        // The failing tensor itself is never written.
        XCTAssertEqual(target.lnF.weight.value.toArray(), try GPT(config: Self.gptConfig, seed: 77).lnF.weight.value.toArray())
        XCTAssertEqual(Self.bits(target), before, "a refused checkpoint changes no parameter")
        _ = saved
    }

    func testOptimizerStateMismatchesAreRefused() throws {
        try saveGPT(CheckpointStore(directory: dir), step: 1)
        let loaded = try LoadedCheckpoint.read(dir)
        let model = try GPT(config: Self.gptConfig)
        let sgd = try SGD(parameters: model.parameters)
        assertCheckpointError(["optimizer is sgd but the checkpoint holds adamw state"]) { try loaded.loadOptimizer(into: sgd) }
        XCTAssertEqual(sgd.stepCount, 0)

        let adam = try AdamW(parameters: model.parameters)
        try loaded.loadOptimizer(into: adam)
        XCTAssertEqual(adam.stepCount, 1)
        XCTAssertTrue(adam.stateTensors().allSatisfy { $0.tensor.toArray().contains { $0 != 0 } }, "moments restored")

        // A checkpoint saved without optimizer state cannot be resumed.
        let plain = "\(dir)/plain"
        try CheckpointStore(directory: plain).save(step: 2, spec: .gpt(Self.gptConfig), model: model, vocabulary: nil,
                                                   optimizer: nil, trainerState: nil)
        XCTAssertFalse(FileManager.default.fileExists(atPath: "\(plain)/step-00000002/optimizer.safetensors"))
        assertCheckpointError(["has no optimizer state to resume from"]) {
            try LoadedCheckpoint.read(plain).loadOptimizer(into: try AdamW(parameters: model.parameters))
        }
    }

    // MARK: (e) Atomicity and pruning

    func testCrashMidSaveLeavesThePreviousCheckpointCurrent() throws {
        let store = CheckpointStore(directory: dir, keep: 2)
        let (model10, _) = try saveGPT(store, step: 10, seed: 10)

        // A crash while writing step 20: its directory exists with a truncated model file and
        // nothing else; `latest` was never moved.
        let partial = "\(dir)/step-00000020"
        try FileManager.default.createDirectory(atPath: partial, withIntermediateDirectories: false)
        let good = try bytes("\(dir)/step-00000010/model.safetensors")
        try write(Array(good.prefix(good.count / 3)), "\(partial)/model.safetensors")

        let loaded = try LoadedCheckpoint.read(dir)
        XCTAssertEqual(loaded.config.step, 10)
        XCTAssertEqual(loaded.path, "\(dir)/step-00000010")
        XCTAssertEqual(try store.latestPath(), "\(dir)/step-00000010")
        let check = try GPT(config: Self.gptConfig, seed: 1)
        try loaded.loadWeights(into: check.parameters)
        XCTAssertEqual(Self.bits(check), Self.bits(model10))
        // Reading the half-written directory itself is refused, not trusted.
        assertCheckpointError(["no checkpoint at \(partial)"]) { _ = try LoadedCheckpoint.read(partial) }

        // Saving step 20 again replaces the partial directory.
        let (model20, path20) = try saveGPT(store, step: 20, seed: 20)
        XCTAssertEqual(path20, partial)
        let reread = try LoadedCheckpoint.read(dir)
        XCTAssertEqual(reread.config.step, 20)
        XCTAssertEqual(try SafeTensorsFile.read(path: "\(partial)/model.safetensors").entries.count, 2 + 12 * 2 + 2 + 1)
        try reread.loadWeights(into: check.parameters)
        XCTAssertEqual(Self.bits(check), Self.bits(model20))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir).sorted(), ["latest", "step-00000010", "step-00000020"])
    }

    func testPruningKeepsTheNewestDirectories() throws {
        let store = CheckpointStore(directory: dir, keep: 2)
        for step in [1, 2, 3, 10, 100] {
            try saveGPT(store, step: step)
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir).sorted(),
                       ["latest", "step-00000010", "step-00000100"], "no temporary files either")
        XCTAssertEqual(try LoadedCheckpoint.read(dir).config.step, 100)

        let one = CheckpointStore(directory: "\(dir)/one", keep: 1)
        try saveGPT(one, step: 5)
        try saveGPT(one, step: 6)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: "\(dir)/one").sorted(), ["latest", "step-00000006"])
        XCTAssertEqual(CheckpointStore(directory: dir, keep: 0).keep, 1, "keep is at least 1")
        XCTAssertEqual(CheckpointStore.stepDirectoryName(7), "step-00000007")
        XCTAssertEqual(CheckpointStore.stepDirectoryName(123_456_789), "step-123456789")
    }

    func testResavingTheLatestStepIsRefusedAndChangesNothing() throws {
        let store = CheckpointStore(directory: dir)
        try saveGPT(store, step: 4, seed: 1)
        let before = try bytes("\(dir)/step-00000004/model.safetensors")
        assertCheckpointError(["step 4 is already the latest checkpoint"]) { _ = try self.saveGPT(store, step: 4, seed: 2) }
        XCTAssertEqual(try bytes("\(dir)/step-00000004/model.safetensors"), before)
        XCTAssertEqual(try LoadedCheckpoint.read(dir).config.step, 4)
    }
}
