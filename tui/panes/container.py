"""The detail rows about a container: what its runtime says (name, image,
pod, start, labels), or only its id when the runtime said nothing."""

from __future__ import annotations

from rich.table import Table

from procscope.containers import Container
from procscope.runtimes import ContainerInfo

from ..safe_text import add_row

MAX_LABELS = 12  # shown; the rest counted


def container_rows(t: Table, c: Container, info: ContainerInfo | None) -> None:
    add_row(t, "container", f"{info.name}  ({c.runtime})" if info is not None and info.name else f"({c.runtime})")
    add_row(t, "container id", c.id)
    if info is None:
        return
    if info.image or info.image_id:
        add_row(t, "image", "  ".join(x for x in (info.image, info.image_id[:19]) if x))
    if info.started:
        add_row(t, "started", info.started)
    if info.pod is not None:
        pod = info.pod
        add_row(t, "pod", f"{pod.namespace}/{pod.name}" + (f"  (uid {pod.uid})" if pod.uid else ""))
        if pod.container:
            add_row(t, "pod container", pod.container)
    labels = sorted((info.pod.labels if info.pod is not None else {}).items() or info.labels.items())
    for k, v in labels[:MAX_LABELS]:
        add_row(t, "label", f"{k}={v}")
    if len(labels) > MAX_LABELS:
        add_row(t, "label", f"… {len(labels) - MAX_LABELS} more")
