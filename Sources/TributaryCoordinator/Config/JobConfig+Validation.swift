import Foundation
import TributaryCompression
import TributaryData
import TributaryModels
import TributaryOptim
import TributaryProtocol
import TributaryTraining

/// What a job file may say, and the values derived from it.
extension JobConfig {
    public func validate() throws {
        func bad(_ s: String) -> JobConfigError { .invalid(s) }
        guard Self.modelTypes.contains(model.type) else { throw bad("model.type must be gpt, mlp or unet (got \(model.type))") }
        _ = try ledgerLocation()
        guard units.samplesPerUnit >= 1 else { throw bad("units.samples_per_unit must be positive") }
        if let mb = units.microBatch, mb < 1 || units.samplesPerUnit % mb != 0 {
            throw bad("units.micro_batch (\(mb)) must divide units.samples_per_unit (\(units.samplesPerUnit))")
        }
        guard optimizer.lr > 0, optimizer.lr.isFinite else { throw bad("optimizer.lr must be positive") }
        guard optimizer.totalRounds >= 1 else { throw bad("optimizer.total_rounds must be positive") }
        if let b = optimizer.sparseBeta1, !(b >= 0 && b < 1) {
            throw bad("optimizer.sparse_beta1 must lie in [0, 1) (got \(b)); leave it out for the automatic choice")
        }
        if let b = optimizer.sparseUpdateBound, !(b > 0 && b.isFinite) {
            throw bad("optimizer.sparse_update_bound must be a positive number (got \(b)); leave it out for the default 2")
        }
        guard rounds.unitsPerRound >= 1 else { throw bad("rounds.units_per_round must be positive") }
        guard rounds.minUnits >= 1, rounds.minUnits <= rounds.unitsPerRound else {
            throw bad("rounds.min_units must lie in 1...units_per_round (\(rounds.unitsPerRound))")
        }
        guard rounds.deadlineSeconds > 0, rounds.maxStaleness >= 0 else {
            throw bad("rounds.deadline_seconds must be positive and rounds.max_staleness non-negative")
        }
        guard Leases.durationRange.contains(leases.durationSeconds) else {
            throw bad("leases.duration_seconds must lie in \(Int(Leases.durationRange.lowerBound))...\(Int(Leases.durationRange.upperBound)) "
                + "(got \(leases.durationSeconds)); workers renew their leases, so a few seconds is enough")
        }
        guard leases.maxPerWorker >= 1 else { throw bad("leases.max_per_worker must be at least 1") }
        guard leases.maxLifetimeSeconds >= leases.durationSeconds else {
            throw bad("leases.max_lifetime_seconds must be at least leases.duration_seconds (\(leases.durationSeconds))")
        }
        guard aggregation.trim >= 0, aggregation.trim < 0.5 else {
            throw bad("aggregation.trim must lie in [0, 0.5): the fraction dropped at each end")
        }
        guard (1...20).contains(aggregation.clipIterations) else {
            throw bad("aggregation.clip_iterations must lie in 1...20")
        }
        guard aggregation.clipRadius > 0, aggregation.clipRadius.isFinite, aggregation.clipRadius <= 100 else {
            throw bad("aggregation.clip_radius must be a positive multiple (at most 100) of the median distance")
        }
        guard (1...1000).contains(validation.trustedAfter) else {
            throw bad("validation.trusted_after must lie in 1...1000 (agreements in a row before a worker is trusted)")
        }
        guard (1...8).contains(validation.trustedPartners) else {
            throw bad("validation.trusted_partners must lie in 1...8 (distinct workers a trusted worker agreed with)")
        }
        guard validation.trustedRate >= 0, validation.trustedRate <= 1 else {
            throw bad("validation.trusted_rate must lie in [0, 1] (the share of a trusted worker's units replicated)")
        }
        guard (1...1000).contains(validation.banAfter) else {
            throw bad("validation.ban_after must lie in 1...1000 (disagreements before a ban)")
        }
        guard validation.tolerance >= 0, validation.tolerance <= 2, validation.lossTolerance > 0,
              validation.lossTolerance <= 1 else {
            throw bad("validation.tolerance must lie in [0, 2] (0: by codec) and validation.loss_tolerance in (0, 1]")
        }
        guard aggregation.maxNormRatio > 1, aggregation.maxNormRatio.isFinite else {
            throw bad("aggregation.max_norm_ratio must be a finite number above 1")
        }
        try limits.validate()
        do { _ = try UpdateCodecSpec(parsing: compression.codec) } catch {
            throw bad("compression.codec: \(error)")
        }
        _ = try downloadCodec()
        guard (1...19).contains(compression.zstdLevel) else { throw bad("compression.zstd_level must lie in 1...19") }
        try validateLocal()
        guard (server.tlsCertificate == nil) == (server.tlsKey == nil) else {
            throw bad("server.tls_certificate and server.tls_key go together")
        }
        do { try imageLoadOptions.validate() } catch let error as DatasetError {
            throw bad("model.image_size / model.in_channels: \(error.message)")
        }
        guard storage.checkpointEveryRounds >= 1 else { throw bad("storage.checkpoint_every_rounds must be positive") }
        guard storage.validationEveryRounds >= 1 else { throw bad("storage.validation_every_rounds must be positive") }
        guard storage.validationBatches >= 0 else { throw bad("storage.validation_batches must not be negative") }
        _ = try listenAddress()
    }

    /// Why the join token is weak, if it is: the example's value, or shorter than 16 characters
    /// (anyone who guesses it can register as many workers as they like).
    public static func weakJoinTokenReason(_ token: String) -> String? {
        if token == "change-me" { return "the join token is the example's 'change-me'" }
        if token.count < 16 { return "the join token has \(token.count) characters; use 16 or more" }
        return nil
    }

    /// What the job asks of image data (`DatasetSource.load`): the U-Net's image size and channels where set.
    public var imageLoadOptions: ImageLoadOptions {
        ImageLoadOptions(size: model.imageSize, channels: model.inChannels)
    }

    /// The model, once the dataset's vocabulary or feature count (and an image's geometry) is known.
    public func modelSpec(vocabularySize: Int?, features: Int?, classes: Int?, geometry: ImageGeometry? = nil) throws -> ModelSpec {
        switch model.type {
        case "gpt":
            guard let vocab = vocabularySize else { throw JobConfigError.invalid("a gpt needs token data; \(data.source) holds images") }
            let spec = ModelSpec.gpt(GPTConfig(vocabSize: vocab, blockSize: model.blockSize ?? 64, nLayer: model.nLayer ?? 4,
                                               nHead: model.nHead ?? 4, nEmbd: model.nEmbd ?? 128, bias: model.bias ?? true))
            try spec.validate()
            return spec
        case "unet":
            return try unetSpec(features: features, geometry: geometry)
        default:
            guard let features, let classes else { throw JobConfigError.invalid("an mlp needs image data; \(data.source) holds tokens") }
            let spec = ModelSpec.mlp(MLPConfig(inputFeatures: features, hidden: model.hidden ?? [512, 512], classes: classes))
            try spec.validate()
            return spec
        }
    }

    /// A DDPM U-Net over the data's square images: of the data's geometry (MNIST, CIFAR-10, an
    /// image folder), else single-channel of the side the pixel count gives (builtin:digits).
    private func unetSpec(features: Int?, geometry: ImageGeometry?) throws -> ModelSpec {
        guard let features else { throw JobConfigError.invalid("a unet needs image data; \(data.source) holds tokens") }
        let side: Int, channels: Int
        if let geometry {
            guard geometry.height == geometry.width else {
                throw JobConfigError.invalid("a unet needs square images; \(data.source) holds images of \(geometry)")
            }
            (side, channels) = (geometry.height, geometry.channels)
        } else {
            side = Int(Double(features).squareRoot().rounded())
            channels = 1
            guard side * side == features else {
                throw JobConfigError.invalid("a unet needs square single-channel images; \(data.source) has \(features) pixels per sample")
            }
        }
        let scheduleName = model.noiseSchedule ?? "linear"
        guard let schedule = DDPMSchedule.Kind(rawValue: scheduleName) else {
            throw JobConfigError.invalid("model.noise_schedule must be linear or cosine (got \(scheduleName))")
        }
        let spec = ModelSpec(UNetConfig(imageSize: side, inChannels: channels, baseChannels: model.baseChannels ?? 32,
                                        channelMultipliers: model.channelMultipliers ?? [1, 2, 2], blocksPerLevel: model.blocksPerLevel ?? 1,
                                        normGroups: model.normGroups ?? 8, timesteps: model.diffusionSteps ?? 1000, schedule: schedule,
                                        attentionResolutions: model.attentionResolutions ?? []))
        try spec.validate()
        return spec
    }

    public func listenAddress() throws -> (host: String, port: Int) {
        guard let colon = server.listen.lastIndex(of: ":"),
              let port = Int(server.listen[server.listen.index(after: colon)...]), (0...65535).contains(port) else {
            throw JobConfigError.invalid("server.listen must be HOST:PORT (got \(server.listen))")
        }
        return (String(server.listen[..<colon]), port)
    }

    /// The join token, from the file or the inline value.
    public func joinToken() throws -> String {
        guard let token = try Self.secret(auth.joinToken, file: auth.joinTokenFile, key: "join_token") else {
            throw JobConfigError.invalid("set auth.join_token or auth.join_token_file: workers need it to join")
        }
        return token
    }

    /// The viewer's token (nil: none), for dashboards when `auth.public_read` is false.
    public func viewerToken() throws -> String? {
        try Self.secret(auth.viewerToken, file: auth.viewerTokenFile, key: "viewer_token")
    }

    /// The operator's token (nil: the operator routes are off).
    public func operatorToken() throws -> String? {
        try Self.secret(auth.operatorToken, file: auth.operatorTokenFile, key: "operator_token")
    }

    /// A secret given inline or in a file (the file wins); nil when neither is set.
    static func secret(_ inline: String?, file: String?, key: String) throws -> String? {
        if let file {
            guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
                throw JobConfigError.invalid("cannot read auth.\(key)_file \(file)")
            }
            let token = text.trimmingCharacters(in: .whitespacesAndNewlines)
            guard !token.isEmpty else { throw JobConfigError.invalid("auth.\(key)_file \(file) is empty") }
            return token
        }
        guard let inline else { return nil }
        guard !inline.isEmpty else { throw JobConfigError.invalid("auth.\(key) is empty; leave it out instead") }
        return inline
    }

    /// The download codec, nil for `none` (full shards).
    public func downloadCodec() throws -> UpdateCodecSpec? {
        let text = compression.downloadCodec.trimmingCharacters(in: .whitespaces).lowercased()
        if text == "none" { return nil }
        let spec: UpdateCodecSpec
        do { spec = try UpdateCodecSpec(parsing: text) } catch {
            throw JobConfigError.invalid("compression.download_codec: \(error); or none for full shards")
        }
        guard spec.codec != .fp32 else {
            throw JobConfigError.invalid("compression.download_codec: fp32 deltas are no smaller than full shards; use none")
        }
        return spec
    }

    private func validateLocal() throws {
        guard rounds.mode == .local else { return }
        guard (1...10_000).contains(local.steps) else { throw JobConfigError.invalid("local.steps must lie in 1...10000 (inner steps per unit)") }
        guard units.samplesPerUnit % local.steps == 0 else {
            throw JobConfigError.invalid("units.samples_per_unit (\(units.samplesPerUnit)) must be a multiple of local.steps (\(local.steps)): each inner step takes an equal share of the unit")
        }
        if let mb = units.microBatch, (units.samplesPerUnit / local.steps) % mb != 0 {
            throw JobConfigError.invalid("units.micro_batch (\(mb)) must divide the samples of one inner step (\(units.samplesPerUnit / local.steps))")
        }
        guard local.outerLr > 0, local.outerLr.isFinite, local.outerMomentum >= 0, local.outerMomentum < 1 else {
            throw JobConfigError.invalid("local.outer_lr must be positive and local.outer_momentum lie in [0, 1)")
        }
        guard !local.outerNesterov || local.outerMomentum > 0 else {
            throw JobConfigError.invalid("local.outer_nesterov needs local.outer_momentum above 0")
        }
        guard !optimizer.totalRounds.multipliedReportingOverflow(by: local.steps).overflow,
              !optimizer.warmupRounds.multipliedReportingOverflow(by: local.steps).overflow else {
            throw JobConfigError.invalid("optimizer.total_rounds × local.steps is too large to count inner steps")
        }
        guard validation.replication != .all else {
            throw JobConfigError.invalid("validation.replication: all cannot check local steps: two workers' pseudo-gradients for one unit differ by their own inner optimizer state; use off (the aggregation rule and the norm guard still apply)")
        }
    }

    /// The coordinator's optimizer. Sync and async: the job's rule and schedule, with AdamW's
    /// β₁ and step bound chosen for the codec (`adamBeta1`, `adamUpdateBound`). Local: the
    /// outer Nesterov SGD at a constant rate, unclipped, as DiLoCo.
    public var optimizerSettings: OptimizerSettings {
        if rounds.mode == .local {
            return OptimizerSettings(kind: .sgd, schedule: .constant(local.outerLr), weightDecay: 0,
                                     momentum: local.outerMomentum, nesterov: local.outerNesterov, gradClip: 0)
        }
        return innerOptimizerSettings
    }

    /// What workers run in local rounds: the `optimizer` section with its schedule counted in
    /// inner steps (warm-up and decay stretched by `local.steps`); nil in other modes.
    public var localStepsDescription: LocalSteps? {
        guard rounds.mode == .local else { return nil }
        let o = innerOptimizerSettings, h = local.steps
        return LocalSteps(steps: h, optimizer: o.kind.rawValue, lr: o.schedule.peak, minLr: o.schedule.minimum,
                          warmupSteps: o.schedule.warmupSteps * h, decaySteps: o.schedule.decaySteps * h,
                          beta1: o.beta1, beta2: o.beta2, weightDecay: o.weightDecay, momentum: o.momentum,
                          nesterov: o.nesterov, gradClip: o.gradClip)
    }

    /// The optimizer the `optimizer` section describes: the coordinator's in sync and async
    /// rounds, the workers' inner one in local rounds (its schedule then counted in inner steps).
    public var innerOptimizerSettings: OptimizerSettings {
        let o = optimizer
        return OptimizerSettings(
            kind: o.type,
            schedule: LearningRateSchedule(peak: o.lr, minimum: o.minLr, warmupSteps: o.warmupRounds, decaySteps: o.totalRounds),
            beta1: adamBeta1, beta2: o.beta2, weightDecay: o.weightDecay, momentum: o.momentum, nesterov: o.nesterov,
            updateBound: adamUpdateBound, gradClip: o.gradClip)
    }

    /// AdamW's β₁ for this job: `optimizer.beta1`, except with a top-k codec, where it is
    /// `optimizer.sparse_beta1` if given, else 0 for fractions below
    /// `momentumFreeTopKFraction` and `beta1` from there. A top-k update is a burst: the
    /// workers' error feedback has already summed the rounds in which a coordinate was not
    /// sent, and momentum on the coordinator spreads each burst over a further ~1/(1−β₁)
    /// rounds, adding that much delay to mass that is already late. Measured with
    /// `tributary bench compression` (150 rounds, final validation loss over fp32's 2.4968):
    /// topk:0.01 +21%…+29% with β₁ 0.9, +7%…+21% (mean about +14%) with β₁ 0;
    /// topk:0.03 +19%…+25% vs +11%…+17%. With steps bounded (`adamUpdateBound`) the
    /// line moved: topk:0.05:int8 +9%…+20% with β₁ 0.9, +2.6%…+4.0% with 0; topk:0.1
    /// +3.4%…+5.2% vs +1.7%…+2.7%; topk:0.3, where bursts are short, +0.3%…+0.6% vs
    /// +1.2%…+1.7%.
    public var adamBeta1: Float {
        guard let spec = try? UpdateCodecSpec(parsing: compression.codec), case let .topK(fraction, _) = spec.kind else {
            return optimizer.beta1
        }
        if let chosen = optimizer.sparseBeta1 { return chosen }
        return fraction < Self.momentumFreeTopKFraction ? 0 : optimizer.beta1
    }

    /// Top-k fractions below this run AdamW without momentum unless `sparse_beta1` says otherwise.
    public static let momentumFreeTopKFraction = 0.2

    /// AdamW's bound on each coordinate's normalised step (`AdamW.updateBound`): with a
    /// top-k codec `optimizer.sparse_update_bound`, by default 2; none for dense codecs.
    /// A coordinate that top-k left out for many rounds arrives with all their mass while
    /// its second moment has decayed, and would move up to 10 learning rates at once.
    /// Measured (`bench compression`, 150 rounds, final validation loss over fp32's 2.4968,
    /// several runs each, β₁ 0): topk:0.01 +6.7%…+8.3% bounded at 2 (9 runs), +7%…+21% unbounded;
    /// bound 1: +13% (steady but slow); bound 3 or 4: +7%…+24% (the spikes return).
    public var adamUpdateBound: Float? {
        guard let spec = try? UpdateCodecSpec(parsing: compression.codec), case .topK = spec.kind else { return nil }
        return optimizer.sparseUpdateBound ?? Self.defaultSparseUpdateBound
    }

    public static let defaultSparseUpdateBound: Float = 2
}
