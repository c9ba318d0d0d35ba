"""One settings source: every image setting is declared once (``ImageSettings``) and the CLI flags of the single-image
commands and of ``hcd run``, the job-spec keys and the result fingerprint are derived from the declarations."""

from __future__ import annotations

import dataclasses
from dataclasses import MISSING
from typing import Any

import click
import pytest
import yaml

from hcd_pipeline.cli import main
from hcd_pipeline.cli.options import options_from
from hcd_pipeline.core.settings_fields import default_of, field_types, setting, setting_fields
from hcd_pipeline.downscaler.settings import DownscaleSettings, ImageSettings
from hcd_pipeline.evaluation.evaluate import EvalSettings
from hcd_pipeline.hcd.settings import METHODS
from hcd_pipeline.pipeline.jobs import load_job
from hcd_pipeline.pipeline.settings import PipelineSettings

SPECIAL = {"model": "tiny-irn-x4", "scale": 4, "weights": "w.safetensors", "address": "ray://head:10001", "num_gpus": 1.0}
"""Values that are valid but are not the default, for fields whose type alone does not give one."""
NEEDS = {"simulated_image_seconds": {"simulated_gpus": True}}
"""Settings that are valid only together with another."""


def other_value(cls: type, name: str) -> Any:
    """A valid value of field ``name`` that is not its default."""
    f = setting_fields(cls)[name]
    default = default_of(f)
    if name in SPECIAL:
        return SPECIAL[name]
    if f.metadata["choices"]:
        return next(c for c in f.metadata["choices"] if c != default)
    types = field_types(cls, name)
    if bool in types:
        return not default
    if int in types and float not in types:
        lo = (f.metadata["bounds"] or (None, None))[0] or 0
        return lo + 2 if default is None else default + 1
    if float in types:
        return 1.0 if not default else default * 2
    raise AssertionError(f"no test value for {cls.__name__}.{name}")


def flags_of(command: str) -> dict[str, click.Parameter]:
    return {p.name: p for p in main.commands[command].params if isinstance(p, click.Option) and p.name}


CLI_FIELDS = [n for n, f in setting_fields(ImageSettings).items() if f.metadata["cli"]]


def test_every_image_setting_is_declared_once_with_help():
    image = setting_fields(ImageSettings)
    assert set(image) <= set(setting_fields(DownscaleSettings)) and set(image) <= set(setting_fields(PipelineSettings))
    for name, f in image.items():
        assert f.metadata["help"].strip(), name
        # The subclasses inherit the very declaration: no second copy to drift.
        assert setting_fields(PipelineSettings)[name] is f and setting_fields(DownscaleSettings)[name] is f
        # eval's settings too, but for the method, which there also takes "official" (the original code's preset)
        assert (setting_fields(EvalSettings)[name] is f) == (name != "method"), name
    assert set(setting_fields(EvalSettings)["method"].metadata["choices"]) == {*METHODS, "official"}
    assert "codec_aware" in CLI_FIELDS and "overlap" in CLI_FIELDS  # reachable from the CLI, not only from Python


@pytest.mark.parametrize("command", ["downscale", "roundtrip", "run", "eval"])
def test_every_cli_setting_is_a_flag_of_the_commands_that_take_it(command):
    flags = flags_of(command)
    cls = {"run": PipelineSettings, "eval": EvalSettings}.get(command, DownscaleSettings)
    for name, f in setting_fields(cls).items():
        if name == "device":  # the model commands' shared --device (upscale and eval have it too): auto there
            assert flags["device"].default == "auto"
            continue
        if not f.metadata["cli"]:
            assert name not in flags or name == "overrides", (command, name)
            continue
        opt = flags[name]
        assert f"--{name.replace('_', '-')}" in opt.opts, (command, name, opt.opts)
        assert f.metadata["help"] in (opt.help or ""), (command, name)
        if f.metadata["choices"]:
            extra = ["all"] if (command, name) == ("eval", "method") else []  # eval runs every method in turn
            assert list(opt.type.choices) == [str(c) for c in f.metadata["choices"]] + extra, (command, name)
        # The single-image commands default to the declaration; hcd run leaves it to the job spec (None).
        want = None if command == "run" else default_of(f)
        got = opt.default
        assert (got == want) or (f.metadata["parse"] == "threads" and got == str(want)), (command, name, got, want)


def test_flags_reach_the_settings_they_name(tmp_path, small_images, monkeypatch):
    # hcd downscale with every image flag set to a non-default value builds exactly those settings.
    seen: dict[str, Any] = {}
    import hcd_pipeline.cli.options as options

    def fake_downscaler(**opts: Any) -> Any:
        seen.update(opts)
        raise SystemExit(0)

    monkeypatch.setattr(options, "downscaler", fake_downscaler)
    import hcd_pipeline.cli.images as images

    monkeypatch.setattr(images, "downscaler", fake_downscaler)
    args = ["downscale", str(small_images / "a.png"), "-o", str(tmp_path / "o")]
    for name in CLI_FIELDS:
        v = other_value(ImageSettings, name)
        flag = f"--{name.replace('_', '-')}"
        args += ([flag] if v else [f"--no-{flag[2:]}"]) if isinstance(v, bool) else [flag, str(v)]
    with pytest.raises(SystemExit):
        main.main(args, standalone_mode=False)
    settings = DownscaleSettings(**seen)
    for name in CLI_FIELDS:
        assert getattr(settings, name) == other_value(ImageSettings, name), name


def test_every_pipeline_setting_is_a_job_spec_key(tmp_path):
    for name, f in setting_fields(PipelineSettings).items():
        place = f.metadata["spec"]
        if place in ("required", "actors", "storage") or name == "overrides":
            continue
        value = other_value(PipelineSettings, name)
        spec = {"input": str(tmp_path / "in"), "output": str(tmp_path / "out")}
        spec.update({"resources": {name: value}} if place == "resources" else {name: value})
        spec.update(NEEDS.get(name, {}))
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(spec))
        assert getattr(load_job(path).settings, name) == value, name


def test_the_fingerprint_follows_the_declared_roles():
    base = PipelineSettings(input="in", output="out")
    fp0 = base.result_fingerprint()
    for name, f in setting_fields(PipelineSettings).items():
        if f.metadata["spec"] == "required" or name in ("overrides", "storage", "min_actors", "max_actors"):
            continue
        changed = dataclasses.replace(base, **{name: other_value(PipelineSettings, name)}, **NEEDS.get(name, {}))
        fp = changed.result_fingerprint()
        role = f.metadata["fp"]
        if role == "always":
            assert name in fp0 and fp[name] != fp0[name], name
        elif role == "unless-default":
            assert name not in fp0 and name in fp, name  # earlier fingerprints stay valid while it is unset
        elif name == "preset":
            assert fp["hcd"] != fp0["hcd"]  # enters resolved, as the HCD settings it names
        else:
            assert name not in fp, name


def test_a_new_setting_appears_everywhere_without_touching_the_cli():
    # A field added to the image settings (here to a subclass, as an edit of ImageSettings would add it) gets its flag
    # from the generator and its fingerprint entry from its role, with no other change.
    extended = dataclasses.make_dataclass(
        "Extended", [("sharpen", float, setting(0.0, "a new setting", fp="unless-default"))], bases=(PipelineSettings,),
        frozen=True, kw_only=True,
    )  # fmt: skip

    @click.command()
    @options_from(extended, layered=True)
    def probe(**kwargs: Any) -> None:
        pass

    opt = {p.name: p for p in probe.params}["sharpen"]
    assert opt.opts == ["--sharpen"] and "a new setting" in opt.help
    s = extended(input="in", output="out")
    assert "sharpen" not in s.result_fingerprint()
    assert dataclasses.replace(s, sharpen=0.5).result_fingerprint()["sharpen"] == 0.5
    assert default_of(setting_fields(extended)["sharpen"]) is not MISSING


def test_every_training_setting_is_a_train_flag_with_the_configs_default():
    from hcd_pipeline.training.config import TrainConfig

    flags = flags_of("train")
    for name, f in setting_fields(TrainConfig).items():
        if not f.metadata["cli"]:
            assert name not in flags or name == "out", name  # -o: its default is made from --family and --scale
            continue
        opt = flags[name]
        assert (f.metadata["flag"] or f"--{name.replace('_', '-')}") in opt.opts and f.metadata["help"] == opt.help, name
        assert opt.default == default_of(f), (name, opt.default)  # one default: hcd train's is the config's
