"""A run's keystroke times as distributions: one CDF a route, a PNG beside the JSON.

matplotlib (bench/requirements.txt) is the bench's alone, never the product's,
and draws with Agg: no display, nothing but the file.
"""

from __future__ import annotations

from pathlib import Path

from .report import percentile

PANELS = (("keystrokes_ms", "a key through tmux (one guest a route)"),
          ("bare_keystrokes_ms", "a bare echo (cat, no tmux) through the tunnel"))


def labels(results: dict) -> dict[str, str]:
    return {"pairing": f"pairing host (--tunnel {results['options'].get('tunnel', 'paramiko')})",
            "openssh": "ssh -N -R", "direct": "direct to the host sshd (no relay)",
            "baseline": f"baseline: pairing host from {results['options'].get('baseline')}"}


def draw(results: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(key, title) for key, title in PANELS if results.get(key)]
    figure, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.4), sharey=True, squeeze=False)
    names = labels(results)
    for axis, (key, title) in zip(axes[0], panels):
        for route, samples in results[key].items():
            ordered = sorted(samples)
            fractions = [(i + 1) / len(ordered) for i in range(len(ordered))]
            axis.step(ordered, fractions, where="post", label=f"{names.get(route, route)}: p50 "
                      f"{percentile(ordered, 50):.2f}, p99 {percentile(ordered, 99):.2f} ms")
        axis.set_xscale("log")  # the tails (p99) are what differs most, a decade beyond the medians
        axis.set_xlabel("round trip, ms (log scale)")
        axis.set_title(title, fontsize=10)
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(loc="lower right", fontsize=8)
    axes[0][0].set_ylabel("fraction of keys at or below")
    load = results.get("load") or [{"loadavg": [float("nan")]}]
    figure.suptitle(f"{results['date']}, {results['machine']['host']} ({results['machine']['nproc']} cores), relays "
                    f"{results['options']['relay_suite']}; load {load[0]['loadavg'][0]:.2f} -> "
                    f"{load[-1]['loadavg'][0]:.2f}", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
