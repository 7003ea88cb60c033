"""Pure functions from params, events and results to message content; no Discord objects, no mocks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from engine.jobs import GeneratedImage, JobResult
from engine.params import GenerationParams
from engine.plan import output_size

MAX_CONTENT = 2000
MAX_FILES = 10
REQUEST_BYTES = 25 * 1024 * 1024  # Discord's cap on one request, whatever the per-file limit
PROMPT_PREVIEW = 180
BAR_CELLS = 12


@dataclass(frozen=True)
class Upload:
    filename: str
    data: bytes


@dataclass(frozen=True)
class Reply:
    """A message to send or edit in: text plus files (images, then a parameters .txt if the text is long)."""

    content: str
    uploads: tuple[Upload, ...] = field(default=())


def _preview(text: str, limit: int = PROMPT_PREVIEW) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _escape(text: str) -> str:
    for char in ("\\", "*", "_", "~", "`", "|", ">", "#", "-", "["):
        text = text.replace(char, "\\" + char)
    return text


def summary(params: GenerationParams) -> str:
    """One line naming what is being drawn; the seed is always shown, it is known before queueing."""
    if params.is_extras:
        out_w, out_h = params.extras_size()
        return f"**Upscale** {params.width}×{params.height} → {out_w}×{out_h} with {params.extras_upscaler}"
    if params.is_describe:
        return f"**Describe** {params.width}×{params.height} with `{params.tagger}`"
    prompt = _escape(_preview(params.prompt)) or "(empty prompt)"
    batch = f", {params.batch_size} images" if params.batch_size > 1 else ""
    source = f", img2img at {params.denoising_strength:g}" if params.init_image is not None else ""
    if params.enable_hr:
        final_w, final_h = output_size(params)
        source += f", hires fix → {final_w}×{final_h}"
    variation = (
        f", variation seed {params.subseed} @ {params.subseed_strength:g}" if params.subseed_strength > 0 else ""
    )
    return (
        f"**{prompt}**\n{params.width}×{params.height}, {params.steps} steps, {params.sampler}, "
        f"CFG {params.cfg_scale:g}, seed {params.seed}{variation}{source}{batch} · `{params.model}`"
    )


MAX_NOTES = 5  # notes shown on a job's message; a paste of 640 unknown fields makes 640 notes
NOTE_CHARS = 200


def fit(text: str, limit: int = MAX_CONTENT) -> str:
    """Text cut to what Discord takes in one message (its end replaced by `…`)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _notes(notes: Sequence[str]) -> str:
    shown = "".join(f"\n⚠️ {_preview(note, NOTE_CHARS)}" for note in notes[:MAX_NOTES])
    more = len(notes) - MAX_NOTES
    return shown + (f"\n⚠️ …and {more} more notes on how the request was read." if more > 0 else "")


def _footer(job_id: str) -> str:
    return f"\n-# job {job_id}"


def _fitted(body: str, job_id: str) -> str:
    """A job's message: its body cut to fit, then the footer that names the job (never cut)."""
    footer = _footer(job_id)
    return fit(body, MAX_CONTENT - len(footer)) + footer


def queued(
    job_id: str,
    params: GenerationParams,
    position: int,
    ahead: int,
    notes: Sequence[str] = (),
    *,
    ready_at: int | None = None,
) -> str:
    """`ready_at`: when the job should be done (Unix seconds), shown as a Discord timestamp that counts down."""
    place = "next up" if ahead == 0 else f"position {position} in the queue, {ahead} ahead"
    eta = f", ready <t:{ready_at}:R>" if ready_at is not None else ""
    return _fitted(f"{summary(params)}\n⏳ Queued: {place}{eta}.{_notes(notes)}", job_id)


def started(job_id: str, params: GenerationParams, notes: Sequence[str] = ()) -> str:
    return _fitted(f"{summary(params)}\n🎨 Starting…{_notes(notes)}", job_id)


def progress_bar(step: int, total: int, cells: int = BAR_CELLS) -> str:
    total = max(total, 1)
    step = min(max(step, 0), total)
    filled = round(cells * step / total)
    return f"`{'█' * filled}{'░' * (cells - filled)}` step {step}/{total}"


def progress(job_id: str, params: GenerationParams, step: int, total: int, notes: Sequence[str] = ()) -> str:
    return _fitted(f"{summary(params)}\n🎨 {progress_bar(step, total)}{_notes(notes)}", job_id)


def failed(job_id: str, message: str) -> str:
    return _fitted(f"❌ {message}", job_id)


def cancelled(job_id: str) -> str:
    return f"🚫 Cancelled.{_footer(job_id)}"


def not_resumed(job_id: str, params: GenerationParams, mention: str, reason: str) -> str:
    """A job left waiting by a restart that could not be queued again."""
    prompt = _escape(_preview(params.prompt, 80)) or "(empty prompt)"
    return _fitted(
        f"{mention} Easel restarted while your job **{prompt}** was waiting, and it could not be queued again: "
        f"{reason}",
        job_id,
    )


def preview_filename(job_id: str) -> str:
    return f"easel-{job_id}-preview.jpg"


def image_filename(job_id: str, index: int, image: GeneratedImage) -> str:
    return f"easel-{job_id}-{index}-{image.seed}.png"


def finished(
    job_id: str,
    result: JobResult,
    notes: Sequence[str] = (),
    *,
    mention: str = "",
    images: Sequence[int] | None = None,
) -> Reply:
    """The final message: the images, then the A1111 parameter text in a code block (as a .txt if too long).

    `images` picks which of the result's images go in this message (all by default); `mention` prefixes the
    text for a channel message that replaces an expired interaction.
    """
    chosen = range(len(result.images)) if images is None else images
    uploads = [Upload(image_filename(job_id, i, result.images[i]), result.images[i].png) for i in chosen]
    head = f"{mention} " if mention else ""
    took = f"Done in {result.seconds:.1f} s." if result.seconds else "Done."
    tail = _notes(notes) + _footer(job_id)
    content = f"{head}{took}\n```\n{result.infotext}\n```{tail}"
    if len(content) > MAX_CONTENT or "```" in result.infotext:
        uploads.append(Upload(f"easel-{job_id}-parameters.txt", result.infotext.encode()))
        content = f"{head}{took} The parameters are in the attached text file.{tail}"
        if len(content) > MAX_CONTENT:
            content = f"{head}{took} The parameters are in the attached text file.{_footer(job_id)}"
    return Reply(content, tuple(uploads))


SUGGESTION_CHARS = 380  # four of them and the rating fit one message


def described(
    job_id: str, result: JobResult, suggestions: Sequence[str], notes: Sequence[str] = (), *, mention: str = "",
    spoiler: bool = False,
) -> Reply:  # fmt: skip
    """A `/describe` result: the image, its rating, and the numbered prompt suggestions its buttons imagine (behind
    spoilers when the image is)."""
    image = result.images[0]
    found = image.description
    head = f"{mention} " if mention else ""
    ratings = ", ".join(f"{name} {p:.2f}" for name, p in found.ratings) if found else ""
    rating = found.rating if found else "unknown"
    lines = [f"{head}**Described** by `{found.tagger if found else '?'}` · rating **{rating}** ({ratings})"]
    for number, text in enumerate(suggestions, start=1):
        shown = _escape(_preview(text, SUGGESTION_CHARS))
        lines.append(f"**{number}.** {f'||{shown}||' if spoiler else shown}")
    if suggestions:
        lines.append("Click a number to imagine it (with your settings).")
    else:
        lines.append("The tagger found no tag above its threshold; try a lower `threshold`.")
    body = "\n".join(lines) + _notes(notes)
    upload = Upload(f"easel-{job_id}-0-described.png", image.png)
    return Reply(_fitted(body, job_id), (upload,))


def split_images(
    sizes: Sequence[int], *, request_limit: int = REQUEST_BYTES, max_files: int = MAX_FILES
) -> list[list[int]]:
    """Group image indices into messages that each stay under Discord's per-request size and file count.

    The first group leaves room for a parameters file; an image too big on its own still gets its own group
    (the upload then fails with a clear error rather than being dropped silently).
    """
    groups: list[list[int]] = [[]]
    used = 64 * 1024  # headroom for the parameters text and the multipart envelope
    for index, size in enumerate(sizes):
        if groups[-1] and (used + size > request_limit or len(groups[-1]) >= max_files - 1):
            groups.append([])
            used = 64 * 1024
        groups[-1].append(index)
        used += size
    return groups
