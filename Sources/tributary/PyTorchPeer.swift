import Foundation
import TributaryTensor

/// A PyTorch training-step script that `bench compute` runs next to its own steps: the shared
/// ../shared/reference/pytorch_peer.py (mlp, gpt) or ours, Deploy/bench/pytorch_unet_peer.py
/// (U-Nets). Both take --threads --warmup --steps --models --opts and print one JSON line per
/// measured configuration.
struct PyTorchPeer {
    struct Row: Decodable {
        let model: String
        let attn: String
        let opt: String
        let msMed: Double
        enum CodingKeys: String, CodingKey { case model, attn, opt, msMed = "ms_med" }
    }

    /// The script's path (nil: not found), and how to name the option that gives it.
    let script: String?
    let option: String

    /// The first of `candidates` (relative to the working directory), then of `besideExecutable`
    /// (relative to the directories above the running binary, e.g. .build/release/), that exists.
    static func locate(_ given: String?, candidates: [String], besideExecutable: String? = nil, option: String) -> PyTorchPeer {
        let fm = FileManager.default
        if let given { return PyTorchPeer(script: fm.fileExists(atPath: given) ? given : nil, option: option) }
        if let found = candidates.first(where: { fm.fileExists(atPath: $0) }) { return PyTorchPeer(script: found, option: option) }
        guard let relative = besideExecutable else { return PyTorchPeer(script: nil, option: option) }
        // .build/release is a link to .build/<triple>/release: look up to four levels above the real binary.
        var directory = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
        for _ in 0..<4 {
            directory = directory.deletingLastPathComponent()
            let path = directory.appendingPathComponent(relative).path
            if fm.fileExists(atPath: path) { return PyTorchPeer(script: path, option: option) }
        }
        return PyTorchPeer(script: nil, option: option)
    }

    /// Runs the script for `configs` × `optimizers` with `python` ("none": skip; nil:
    /// /tmp/torchvenv/bin/python if present, else python3) and returns its rows; prints why when none.
    func run(python given: String?, configs: [String], optimizers: [String], warmup: Int, steps: Int) -> [Row] {
        if given == "none" || configs.isEmpty { return [] }
        guard let script else {
            print("# PyTorch peer script not found (give \(option))")
            return []
        }
        let fm = FileManager.default
        let python = given ?? (fm.isExecutableFile(atPath: "/tmp/torchvenv/bin/python") ? "/tmp/torchvenv/bin/python" : "/usr/bin/env")
        var args = python == "/usr/bin/env" ? ["python3"] : []
        args += [script, "--threads", String(ComputeThreads.count), "--warmup", String(warmup), "--steps", String(steps),
                 "--models", configs.joined(separator: ","), "--opts", optimizers.joined(separator: ",")]
        print("# running the PyTorch peer: \(python) \(args.joined(separator: " "))")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = args
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.standardError
        do { try process.run() } catch {
            print("# PyTorch peer could not start: \(error.localizedDescription)")
            return []
        }
        let output = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            print("# PyTorch peer failed (exit \(process.terminationStatus)); is torch installed for \(python)?")
            return []
        }
        let lines = String(decoding: output, as: UTF8.self).split(separator: "\n")
        for line in lines where line.hasPrefix("#") { print(line) }
        return lines.filter { $0.hasPrefix("{") }.compactMap { try? JSONDecoder().decode(Row.self, from: Data($0.utf8)) }
    }
}
