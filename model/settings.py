"""Runtime settings: one pydantic-settings class, read from ``PAIDAN_*`` environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything an operator may set at run time. Training hyperparameters are not here; see
    :class:`model.config.TrainingConfig`."""

    model_config = SettingsConfigDict(env_prefix="PAIDAN_", env_file=None, extra="ignore")

    model_root: Path = Field(
        Path("models"), description="Directory holding one folder per model version"
    )
    data_dir: Path = Field(
        Path("var"), description="Directory for the embedded SQLite database and logs"
    )
    database_url: str | None = Field(
        None, description="SQLAlchemy URL of the feedback database; default: SQLite under data_dir"
    )
    top_k: int = Field(3, ge=1, le=20, description="Candidates returned per head")
    similar_k: int = Field(5, ge=0, le=20, description="Similar past tickets returned per ticket")
    max_text_chars: int = Field(
        20_000, ge=100, description="Longest accepted ticket text, in characters"
    )
    max_title_chars: int = Field(200, ge=10, description="Longest accepted title, in characters")
    max_batch: int = Field(1_000, ge=1, description="Most tickets in one batch request")

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'paidan.db').resolve()}"


class SettingsError(RuntimeError):
    """A ``PAIDAN_*`` value is invalid; the message is one line naming the variable."""


def load_settings() -> Settings:
    """Read settings from the environment, turning validation errors into one clear line."""
    try:
        return Settings()
    except ValidationError as e:
        problems = "; ".join(
            f"PAIDAN_{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
            for err in e.errors()
        )
        raise SettingsError(f"invalid settings: {problems}") from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Process-wide settings, read once."""
    return load_settings()
