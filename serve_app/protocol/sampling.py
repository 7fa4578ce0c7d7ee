"""Sampling: the request fields both text routes share (OpenAI's, plus vLLM's extras at the top level) and the
one mapping of them, with defaults filled in, that both engines and the access log use."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_CHOICES = 8  # bounds the work one request can ask for
MAX_STOP_CHARS = 256  # stop strings are matched against the text on every token
MAX_STOP_TOKEN_IDS = 64
MAX_LOGIT_BIAS = 300  # OpenAI's cap


@dataclass(frozen=True)
class SamplingParams:
    """A request's sampling settings with every default filled in: the one mapping both engines and the
    access log use (OpenAI's defaults, vLLM's for its extras; top_k 0 disables)."""

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: int | None = None
    min_tokens: int = 0  # end-of-sequence and stop tokens are held back until this many were generated
    ignore_eos: bool = False
    stop_token_ids: tuple[int, ...] = ()
    logit_bias: tuple[tuple[int, float], ...] = ()  # (token id, bias added to its logit)

    def for_choice(self, index: int) -> SamplingParams:
        # n seeded choices must differ from each other yet repeat across calls.
        if self.seed is None or index == 0:
            return self
        return SamplingParams(**{**asdict(self), "seed": self.seed + index})


class SamplingRequest(BaseModel):
    """Fields and helpers of chat completions and (legacy) completions alike."""

    model_config = ConfigDict(extra="forbid")

    model: str
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, ge=0.0, le=1.0)  # 0 (OpenAI allows it): only the most likely token
    top_k: int | None = Field(None, ge=-1, le=2**31 - 1, description="vLLM extra; -1 or 0 disables")
    min_p: float | None = Field(None, ge=0.0, le=1.0)
    repetition_penalty: float | None = Field(None, gt=0.0, le=10.0)
    presence_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    max_tokens: int | None = Field(None, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = Field(None, ge=-(2**63), lt=2**64)
    n: int = Field(1, ge=1, le=MAX_CHOICES)
    min_tokens: int = Field(0, ge=0, description="vLLM extra: no end of sequence before this many tokens.")
    ignore_eos: bool = Field(False, description="vLLM extra: keep generating past end-of-sequence tokens.")
    stop_token_ids: list[Annotated[int, Field(ge=0)]] | None = Field(
        None, max_length=MAX_STOP_TOKEN_IDS, description="vLLM extra: token ids that end a choice.")
    logit_bias: dict[str, Annotated[float, Field(ge=-100, le=100)]] | None = Field(
        None, description="Token id (as a string) -> bias added to its logit, -100 to 100 (OpenAI).")

    @field_validator("stop")
    @classmethod
    def _check_stop(cls, stop: str | list[str] | None) -> str | list[str] | None:
        stops = [stop] if isinstance(stop, str) else (stop or [])
        if len(stops) > 4 or any(not s or len(s) > MAX_STOP_CHARS for s in stops):
            raise ValueError(f"stop must be up to 4 non-empty strings of at most {MAX_STOP_CHARS} characters")
        return stop

    @field_validator("logit_bias")
    @classmethod
    def _token_ids(cls, bias: dict[str, float] | None) -> dict[str, float] | None:
        # isdecimal() alone lets "²" or "٣" through, and 5,000 digits exceed int()'s limit: ASCII, a 32-bit id.
        if bias is not None and (len(bias) > MAX_LOGIT_BIAS or not all(
                k.isascii() and k.isdecimal() and len(k) <= 10 and int(k) < 2**31 for k in bias)):
            raise ValueError(f"logit_bias maps at most {MAX_LOGIT_BIAS} token ids (as strings of digits) to biases")
        named: set[int] = set()
        for token in map(int, bias or {}):  # "5" and "05": one token given two biases
            if token in named:
                raise ValueError(f"logit_bias names token id {token} more than once")
            named.add(token)
        return bias

    def sampling(self) -> SamplingParams:
        return SamplingParams(
            temperature=1.0 if self.temperature is None else self.temperature,
            # top_p 0 keeps the one most likely token, which the engines (vLLM: top_p > 0) take as top_k 1
            top_p=1.0 if self.top_p in (None, 0) else self.top_p,
            top_k=1 if self.top_p == 0 else max(self.top_k or 0, 0),
            min_p=self.min_p or 0.0,
            repetition_penalty=self.repetition_penalty or 1.0,
            presence_penalty=self.presence_penalty or 0.0,
            frequency_penalty=self.frequency_penalty or 0.0,
            seed=self.seed,
            min_tokens=self.min_tokens,
            ignore_eos=self.ignore_eos,
            stop_token_ids=tuple(self.stop_token_ids or ()),
            logit_bias=tuple(sorted((int(k), v) for k, v in (self.logit_bias or {}).items())),
        )

    def sampling_summary(self) -> dict:
        """What the access log records about sampling (never message content)."""
        summary = {**asdict(self.sampling()), "max_tokens": self.token_budget(), "n": self.n}
        summary["logit_bias"] = len(summary["logit_bias"])  # how many, not which
        return summary

    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    def token_budget(self) -> int | None:
        """Requested completion-token cap."""
        return self.max_tokens
