/// The example job file.
extension JobConfig {
    /// The commented example `tributary coordinator init` writes.
    public static let example = """
    # Tributary training job. Every key is optional; the values shown are the defaults
    # unless marked otherwise.
    name: tributary-job

    model:
      type: gpt            # gpt (token data), mlp or unet (image data; unet: a DDPM denoiser)
      n_layer: 4
      n_head: 4
      n_embd: 128
      block_size: 64       # context length
      bias: true
      # hidden: [512, 512] # mlp only
      # image_size: 32               # unet only: the images' side and channels (1 or 3); default:
      # in_channels: 3               #   the data's own (an image folder: 32 and 3)
      # base_channels: 32            # unet only, with these defaults:
      # channel_multipliers: [1, 2, 2]
      # blocks_per_level: 1
      # norm_groups: 8
      # attention_resolutions: []    # image sides (e.g. [7]) whose blocks get self-attention
      # diffusion_steps: 1000
      # noise_schedule: linear       # linear or cosine

    data:
      source: builtin:arithmetic   # a text file, a nanoGPT .bin file, a directory of MNIST IDX files,
                                   # of CIFAR-10 batches (data_batch_N.bin) or of PNG/JPEG images
      validation_fraction: 0.1
      seed: 1337                   # fixes initialisation and the order of samples
      random_flip: false           # images: mirror training images left-right at random (seeded)

    units:
      samples_per_unit: 8          # sequences (or images) in one work unit
      # micro_batch: 4             # a worker computes a unit in slices of this many

    optimizer:
      type: adamw                  # adamw or sgd (the state lives on the coordinator)
      lr: 0.001
      # min_lr: 0.0001             # end of the cosine decay (default lr / 10)
      warmup_rounds: 20
      total_rounds: 1000           # the job ends after this many optimizer steps
      # weight_decay: 0.1          # default 0.1 for adamw, 0 for sgd
      beta1: 0.9
      beta2: 0.99
      # sparse_beta1: 0.0          # adamw's beta1 with a topk codec (default: 0 below topk:0.2, beta1 from there)
      # sparse_update_bound: 2     # with a topk codec, adamw's largest step per coordinate, in learning rates
      grad_clip: 1.0

    rounds:
      mode: sync                   # sync: average a round of units; async: apply each update on arrival;
                                   # local: each unit is local.steps optimizer steps on the worker (DiLoCo)
      units_per_round: 4           # the round's batch is units_per_round × samples_per_unit
      min_units: 1                 # a round whose deadline passed closes with at least this many
      deadline_seconds: 120
      max_staleness: 1             # accept updates up to this many versions old, down-weighted

    leases:
      duration_seconds: 10         # 1 to 3600; workers renew every third of it while they work, so a unit
                                   # whose worker vanished goes back to the queue after at most this long
      max_per_worker: 1            # leases one worker may hold at once
      max_lifetime_seconds: 600    # renewals never carry a lease past this (nor past its sync round's deadline)

    aggregation:
      rule: centered_clip          # centered_clip (untrusted volunteers), trimmed_mean, median, or mean (a trusted cluster)
      trim: 0.2                    # trimmed_mean: fraction dropped at each end of every coordinate
      clip_iterations: 3           # centered_clip: iterations ...
      clip_radius: 1.0             # ... and radius, as a multiple of the updates' median distance from their median
      max_norm_ratio: 10           # refuse an update whose norm passes 10x the median of recent accepted ones
      refuse_replays: true         # refuse an update byte for byte equal to one accepted for another unit

    validation:
      replication: adaptive        # adaptive: a new or distrusted worker's units are all computed again by
                                   # another worker, a trusted one's at trusted_rate; all; off (trusted cluster)
      trusted_after: 5             # agreements in a row before a worker is trusted ...
      trusted_partners: 2          # ... with at least this many distinct workers (colluders have only each other)
      trusted_rate: 0.05           # share of a trusted worker's units still replicated
      ban_after: 3                 # disagreements before a worker is banned and its open round's updates voided
      tolerance: 0                 # largest relative distance of two honest updates of a unit; 0: by codec
      loss_tolerance: 0.01         # largest relative difference of two honest reported losses

    limits:                        # per client address (an IPv4 address or an IPv6 /64)
      registrations_per_minute: 6
      registration_burst: 20
      bad_join_tokens: 5           # wrong join tokens before the address is locked out ...
      lockout_seconds: 300         # ... for this long
      public_requests_per_second: 20   # requests without a bearer token to the public routes
      public_burst: 40
      max_connections: 900
      connections_per_second: 10   # new connections (keep-alive clients need few) ...
      connection_burst: 60         # ... after a burst of this many
      max_connections_per_address: 64
      max_concurrent_uploads: 64
      idle_timeout_seconds: 30     # also before a connection's first request
      handshake_timeout_seconds: 10

    compression:
      codec: fp32                  # uploads: fp32, fp16, bf16, int8:256 (block), int4:64, topk:0.01 (fraction kept), topk:0.01:int8,
                                   # lowrank:6:int4 (PowerSGD factors: 100x fewer bytes, for slow uplinks)
      download_codec: none         # none: changed shards in full; or deltas between versions: int8, int4, lowrank:8:int4, …
      zstd_level: 1                # every update body is zstd-compressed at this level (1: fastest; quantized gradients gain little from more)

    local:                         # rounds.mode: local only
      steps: 10                    # inner steps per unit (samples_per_unit must be a multiple)
      outer_lr: 0.7                # the outer Nesterov SGD over the round's pseudo-gradients
      outer_momentum: 0.9

    server:
      listen: 127.0.0.1:8470       # 0.0.0.0:8470 to accept volunteers from other machines
      # tls_certificate: cert.pem  # with both set: HTTPS, HTTP/2 through ALPN
      # tls_key: key.pem

    storage:
      data_directory: ./tributary-coordinator   # checkpoints, and the ledger when it is SQLite
      ledger: sqlite               # or sqlite:/path/ledger.sqlite, or postgres://user@host:5432/db
                                   # (password: ?password_file=/path, or TRIBUTARY_LEDGER_PASSWORD / PGPASSWORD)
      checkpoint_every_rounds: 10
      validation_every_rounds: 10
      validation_batches: 8

    auth:
      join_token: change-me        # required (or join_token_file); workers present it once to register
      # join_token_file: join-token.txt
      public_read: true            # false: status, workers, model and metrics need a worker's or the viewer's token
      # viewer_token_file: viewer-token.txt      # for the dashboard and `tributary status --token-file`
      # operator_token_file: operator-token.txt  # enables `tributary coordinator ban`

    """
}
