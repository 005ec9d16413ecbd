"""``python -m safepoint``: the same as the ``safepoint`` command."""

from __future__ import annotations

from .cli import main

raise SystemExit(main())
