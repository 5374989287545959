"""Errors the user can act on. The CLI prints their message, never a traceback."""


class CompoundFERError(Exception):
    """Base class: the message names the file or option at fault and says what to do."""


class DataError(CompoundFERError):
    """A data folder, image or annotation file that cannot be used."""


class ConfigError(CompoundFERError):
    """A bad configuration key or value."""


class WeightsError(CompoundFERError):
    """Missing or unsafe model weights."""


class ModelError(CompoundFERError):
    """A model that cannot do what a method asks of it (e.g. a head that does not grow with the classes)."""


def brief_load_error(err: BaseException, *, limit: int = 3) -> str:
    """A few lines for a ``load_state_dict`` failure, which lists every mismatched key (hundreds of
    lines for a real backbone): counts per kind and the first ``limit`` keys of each."""
    import re

    text = str(err)
    if "Error(s) in loading state_dict" not in text:
        return text if len(text) <= 400 else text[:400] + " ..."
    parts = []
    for kind, pattern in (("missing", r'Missing key\(s\) in state_dict: (.*?)\.\s*(?:\n|$)'),
                          ("unexpected", r'Unexpected key\(s\) in state_dict: (.*?)\.\s*(?:\n|$)')):
        m = re.search(pattern, text)
        if m:
            keys = re.findall(r'"([^"]+)"', m.group(1))
            parts.append(f"{len(keys)} {kind} key(s) ({', '.join(keys[:limit])}{', ...' if len(keys) > limit else ''})")
    sizes = re.findall(r"size mismatch for ([^:]+):", text)
    if sizes:
        more = ", ..." if len(sizes) > limit else ""
        parts.append(f"{len(sizes)} shape mismatch(es) ({', '.join(sizes[:limit])}{more})")
    return "weights do not fit the model: " + "; ".join(parts) if parts else text[:400]
