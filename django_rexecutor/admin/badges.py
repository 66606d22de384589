"""Status colours: one palette keyed by ``JobStatus``, from which the list badges, the
dashboard's counts and its chart all take their colours, in light and dark admin themes."""

from __future__ import annotations

from dataclasses import dataclass

from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

from ..status import JobStatus


@dataclass(frozen=True)
class Colours:
    """Badge background/text for the light and the dark theme, and a strong tone for charts
    (readable on both backgrounds)."""

    light_bg: str
    light_fg: str
    dark_bg: str
    dark_fg: str
    strong: str


PALETTE: dict[JobStatus, Colours] = {
    JobStatus.SCHEDULED: Colours("#dbeafe", "#1e3a8a", "#1e3a5f", "#bfdbfe", "#3b82f6"),
    JobStatus.EXECUTING: Colours("#ede9fe", "#5b21b6", "#3b2a6b", "#ddd6fe", "#8b5cf6"),
    JobStatus.RETRYABLE: Colours("#fef3c7", "#92400e", "#5c3d0b", "#fde68a", "#f59e0b"),
    JobStatus.COMPLETE: Colours("#dcfce7", "#166534", "#14532d", "#bbf7d0", "#22c55e"),
    JobStatus.CANCELLED: Colours("#e5e7eb", "#374151", "#3a3f47", "#e5e7eb", "#9ca3af"),
    JobStatus.DISCARDED: Colours("#fee2e2", "#991b1b", "#5f1d1d", "#fecaca", "#ef4444"),
    JobStatus.WAITING: Colours("#e0f2fe", "#075985", "#0c3b57", "#bae6fd", "#0ea5e9"),
}

#: The chart's "failed" series uses the discarded colour: both mean "something went wrong".
FAILED_COLOUR = PALETTE[JobStatus.DISCARDED].strong

_missing = set(JobStatus) - set(PALETTE)
if _missing:
    raise AssertionError(f"No badge colours for statuses: {sorted(_missing)}")


def badge(status: str) -> SafeString:
    """The coloured ``<span>`` showing a status label; unknown values render as plain text."""
    try:
        member = JobStatus(status)
    except ValueError:
        return format_html('<span class="rx-badge">{}</span>', status)
    return format_html('<span class="rx-badge rx-badge--{}">{}</span>', member.value, member.label)


def _rules(dark: bool, prefix: str = "") -> str:
    lines = []
    for status, c in PALETTE.items():
        bg, fg = (c.dark_bg, c.dark_fg) if dark else (c.light_bg, c.light_fg)
        lines.append(
            f"{prefix}.rx-badge--{status.value}{{background:{bg};color:{fg}}}"
            f"{prefix}.rx-swatch--{status.value}{{background:{c.strong}}}"
        )
    return "\n".join(lines)


def badge_css() -> SafeString:
    """A ``<style>`` block for the badges. The admin's theme switch sets
    ``html[data-theme]``; "auto" (or no choice) follows the operating system."""
    css = "\n".join(
        [
            ".rx-badge{display:inline-block;padding:1px 8px;border-radius:10px;"
            "font-size:0.75rem;font-weight:600;line-height:1.6;white-space:nowrap;"
            "background:var(--darkened-bg);color:var(--body-fg)}",
            ".rx-swatch{display:inline-block;width:10px;height:10px;border-radius:2px;"
            "margin-right:4px;vertical-align:baseline}",
            # The progress bar of the job list and detail (``JobRecordAdmin.progress_bar``).
            ".rx-progress{white-space:nowrap;font-variant-numeric:tabular-nums}",
            ".rx-progress-bar{display:inline-block;width:80px;height:8px;border-radius:4px;"
            "background:var(--darkened-bg);border:1px solid var(--hairline-color);"
            "vertical-align:middle;overflow:hidden}",
            ".rx-progress-fill{display:block;height:100%;background:var(--link-fg)}",
            _rules(dark=False),
            "@media (prefers-color-scheme: dark){",
            _rules(dark=True, prefix='html[data-theme="auto"] '),
            _rules(dark=True, prefix="html:not([data-theme]) "),
            "}",
            _rules(dark=True, prefix='html[data-theme="dark"] '),
        ]
    )
    # Built only from the constant palette above, never from user input.
    return mark_safe(f"<style>{css}</style>")
