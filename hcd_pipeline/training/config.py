"""Settings of one training run (:class:`TrainConfig`): recorded in the checkpoint and the exported weights; ``hcd train``'s
flags are generated from its fields."""

from __future__ import annotations

from dataclasses import dataclass

from hcd_pipeline.core.errors import SettingsError
from hcd_pipeline.core.settings_fields import setting
from hcd_pipeline.jpeg.simulate import SIMULATED_CODECS
from hcd_pipeline.models.edsr import EDSRConfig, SRRescaler
from hcd_pipeline.models.irn import IRN, IRNConfig

FAMILIES = ("irn", "sr")
"""Model families ``hcd train`` trains: IRN, and the SR pair (bicubic down, EDSR up)."""

Model = IRN | SRRescaler


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one training run (recorded in the checkpoint and in the exported weights)."""

    scale: int = setting(2, "scale factor", choices=(2, 4))
    data: str = setting("BSD200", "training images: a folder, or a set name under the data root (io.datasets)")
    val: str = setting("Set5", "validation images: a folder or a set name ('' for none)")
    out: str = setting("runs/irn-x2", "run folder (hcd train: default runs/<family>-x<scale>)", cli=False)
    blocks: int = setting(4, "coupling blocks per level (EDSR: residual blocks)")
    width: int = setting(32, "dense-block growth channels (EDSR: channels)")
    patch: int = setting(48, "HR patch size")
    batch: int = setting(16, "crops per step")
    steps: int = setting(3600, "optimisation steps")
    lr: float = setting(1e-3, "peak learning rate")
    lr_min: float = setting(1e-5, "learning rate at the end of the cosine schedule", cli=False)
    warmup: int = setting(100, "steps of linear warm-up")
    prime: int = setting(
        0, "steps before the warm-up at learning rate 0 that only fill Adam's moments (a run from --init keeps its "
        "weights until Adam knows the gradients' scale)",
    )  # fmt: skip
    lambda_fit: float | None = setting(None, "weight of L2(LR, bicubic LR) (default: 4 at x2, 16 at x4, the original recipe)")
    lambda_ce: float = setting(1.0, "weight of the latent's sum(z^2) term", cli=False)
    z_train: float = setting(1.0, "std of z in the reconstruction loss (IRN: 1; 0 trains a z = 0 decoder)")
    weight_decay: float = setting(1e-5, "Adam's weight decay", cli=False)
    clip: float = setting(10.0, "gradient-norm clip", cli=False)
    seed: int = setting(0, "seed of crops, augmentation and z")
    ckpt_every: int = setting(50, "steps between checkpoints (resume points)")
    val_every: int = setting(250, "steps between validations")
    log_every: int = setting(10, "steps between log lines", cli=False)
    threads: int = setting(0, "torch threads (0: torch default)")
    device: str = setting("auto", "cpu, cuda, cuda:N or auto")
    init: str = setting("", "start from these weights: a model name (irn-x2) or a weights file ('': random)")
    init_lr_scale: float = setting(0.1, "learning-rate factor of the --init weights (new layers: 1; 0 freezes them)")
    restore_blocks: int = setting(0, "LR restorer blocks applied before upscaling (0: none; IRNConfig.restore_blocks)")
    restore_width: int = setting(64, "LR restorer channels")
    codec: str = setting("none", "codec between downscaler and upscaler in the loss", choices=SIMULATED_CODECS)
    codec_q_min: int = setting(70, "lowest JPEG quality drawn per crop (hcd train: --codec-quality MIN-MAX)", cli=False)
    codec_q_max: int = setting(95, "highest JPEG quality drawn per crop (hcd train: --codec-quality MIN-MAX)", cli=False)
    codec_clean: float = setting(0.1, "share of crops that skip the codec")
    val_quality: int = setting(90, "real-codec quality scored in validation (with --codec)")
    time_budget_s: float = setting(
        0.0, "seconds: fit the schedule to end (and export) within about this time (0: --steps)", flag="--time-budget"
    )
    family: str = setting(
        "irn", "irn: IRN; sr: bicubic down + EDSR up (--blocks / --width are EDSR's: 16 / 64 for EDSR-baseline)", choices=FAMILIES
    )
    precision: str = setting(
        "fp32", "numerics of the training step's forward and backward: fp32 (TF32 on GPUs), bf16 (autocast); "
        "validation stays float32", choices=("fp32", "bf16"),
    )  # fmt: skip
    export_dtype: str = setting(
        "float32", "storage type of the exported weights (computed in float32; float16 halves the file)",
        choices=("float32", "float16"),
    )  # fmt: skip

    def fit_weight(self) -> float:
        if self.lambda_fit is not None:
            return self.lambda_fit
        return 4.0 if self.scale == 2 else 16.0

    def model_config(self) -> IRNConfig | EDSRConfig:
        if self.family == "sr":
            return EDSRConfig(scale=self.scale, blocks=self.blocks, width=self.width)
        return IRNConfig(
            scale=self.scale,
            blocks=self.blocks,
            width=self.width,
            z_std=self.z_train,
            restore_blocks=self.restore_blocks,
            restore_width=self.restore_width,
        )

    def check(self) -> None:
        """Refuse settings that cannot train (clear errors before any work)."""
        if self.family not in FAMILIES:
            raise SettingsError(f"training family {self.family!r}: expected one of {FAMILIES}")
        if self.precision not in ("fp32", "bf16"):
            raise SettingsError(f"training precision {self.precision!r}: expected fp32 or bf16")
        if self.family == "sr" and (self.codec != "none" or self.restore_blocks):
            raise SettingsError("the SR family trains without a codec or an LR restorer (--codec none, --restore-blocks 0)")
        if self.prime < 0 or self.warmup < 0:
            raise SettingsError(f"prime {self.prime} / warmup {self.warmup}: expected steps >= 0")
        if self.export_dtype not in ("float32", "float16"):
            raise SettingsError(f"export dtype {self.export_dtype!r}: expected float32 or float16")
        if self.codec not in SIMULATED_CODECS:
            raise SettingsError(f"training codec {self.codec!r}: expected one of {SIMULATED_CODECS}")
        if not 1 <= self.codec_q_min <= self.codec_q_max <= 100:
            raise SettingsError(f"codec qualities {self.codec_q_min}..{self.codec_q_max}: expected 1 <= min <= max <= 100")
        if not 0.0 <= self.codec_clean <= 1.0:
            raise SettingsError(f"codec_clean {self.codec_clean}: expected a share in [0, 1]")
        if self.codec != "none" and self.patch % (16 * self.scale):
            raise SettingsError(f"patch {self.patch}: with a codec it must be a multiple of {16 * self.scale} (whole LR MCUs)")
