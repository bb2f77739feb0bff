"""Tiny models put into a BentoML store for the serving tests and benchmarks, including the
broken ones the fallback tests serve. Run in a child process (BentoML reads BENTOML_HOME at
import): ``python -c "from tests.support.served import main; main()" KIND WORK_DIR``."""

from __future__ import annotations

import sys
from pathlib import Path

LABELS = {"zenml_model_version_number": "7", "zenml_model_stage": "production"}


def _static_batch(onnx_path: Path) -> None:
    """Pin the batch axis of an exported model to 1: it loads and warms up, and raises in
    ONNX Runtime on the first batch of two (an export that forgot its dynamic axes)."""
    import onnx

    model = onnx.load(str(onnx_path))
    for value in [*model.graph.input, *model.graph.output]:
        value.type.tensor_type.shape.dim[0].dim_value = 1
    onnx.save(model, str(onnx_path))


def store(kind: str, work: Path) -> str:
    """kind: ``plain`` (version 7); ``calibrated`` (version 7 with a calibration);
    ``fallback_corrupt`` (version 7 whose model.onnx fails its
    sha256 check, with version 6 as fallback); ``fallback_raises`` (version 7 that raises on
    batches of two, with version 6 as fallback). Returns the BentoML tag."""
    from bentos.store import BUNDLE_SUBDIR, save_bundle_to_bentoml
    from rxvision.export.onnx_export import export_onnx
    from rxvision.models import load_bundle
    from rxvision.serving import ONNX_FILE, write_export_manifest
    from tests.support.tiny import make_tiny_bundle

    primary = make_tiny_bundle(work / "primary", image_size=32, num_classes=3)
    if kind == "plain":
        return str(save_bundle_to_bentoml(primary, labels=LABELS).tag)
    if kind == "calibrated":
        from tests.support.tiny import calibrate_tiny_bundle

        calibrated = calibrate_tiny_bundle(primary, work / "calibrated")
        return str(save_bundle_to_bentoml(calibrated, labels=LABELS).tag)
    spare = make_tiny_bundle(work / "spare", image_size=32, num_classes=3, seed=1)
    export_onnx(load_bundle(spare).model, spare / ONNX_FILE, 32)
    write_export_manifest(spare, spare / ONNX_FILE)
    onnx_file = None
    if kind == "fallback_raises":
        onnx_file = export_onnx(load_bundle(primary).model, work / "static" / ONNX_FILE, 32)
        _static_batch(onnx_file)
    # config sections as a deployment stores them (the corrupt case checks they reach the service)
    stored = (
        {"serving": {"top_k": 2}, "monitoring": {"traffic_sample_rate": 0.25}}
        if kind == "fallback_corrupt"
        else None
    )
    model = save_bundle_to_bentoml(
        primary,
        labels=LABELS,
        onnx_file=onnx_file,
        fallback=spare,
        fallback_version="6",
        service_config=stored,
    )
    if kind == "fallback_corrupt":
        import bentoml

        target = Path(bentoml.models.get(model.tag).path) / BUNDLE_SUBDIR / ONNX_FILE
        data = bytearray(target.read_bytes())
        data[len(data) // 2] ^= 0xFF  # one flipped byte: the sha256 check must catch it
        target.write_bytes(bytes(data))
    return str(model.tag)


def main() -> None:
    print(store(sys.argv[1], Path(sys.argv[2])))
