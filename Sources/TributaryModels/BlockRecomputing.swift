/// A model held whole that can run with activation checkpointing per block: forward keeps
/// only each block's input, and backward recomputes one block's internals at a time from
/// it before taking its gradient (what `torch.utils.checkpoint` does per block). Less
/// memory (the kept inputs and one block's internals instead of every block's) for about
/// one more forward pass. A worker whose plan is `.residentModel(recomputesBlocks: true)`
/// sets it before each unit.
public protocol BlockRecomputing: TrainableModel {
    /// Whether blocks are recomputed in backward; the gradients are the same either way.
    var recomputesBlocks: Bool { get set }
}
