"""The class's labelled drawings, kept on the server, one module per job:

- `store`: `DrawingStore`, the SQLite database of drawings (one connection per call);
- `schema`: its tables, the migrations from older versions, opening it read-only;
- `limits`: what a visitor may save (a rate limit per address, the cap, the teacher's pause);
- `dataset`: the drawings as values (`Drawings` arrays, a `DrawingSummary` per drawing);
- `export`: mnist.npz and the IDX pair a teacher downloads;
- `thumbnails`: a stored picture made safe to show (a grey placeholder when damaged);
- `errors`: the error types and the sentences a teacher reads for a disk's faults.

The names below are the ones the pages, serving and training use.
"""

from mnist_core.drawings.dataset import HOLDOUT_EVERY, Drawings, DrawingSummary
from mnist_core.drawings.errors import (
    DrawingCollectionPaused,
    DrawingRateLimited,
    DrawingStoreError,
    DrawingStoreFull,
)
from mnist_core.drawings.export import export_idx_zip, export_npz
from mnist_core.drawings.limits import (
    MAX_DRAWINGS,
    RATE_LIMIT_DRAWINGS,
    RATE_LIMIT_WINDOW_SECONDS,
    collection_enabled,
    max_drawings,
)
from mnist_core.drawings.schema import SCHEMA_VERSION
from mnist_core.drawings.store import MAX_RAW_PNG_BYTES, PAGE_LIMIT, DrawingStore, drawings_path
from mnist_core.drawings.thumbnails import THUMBNAIL_SIZE, thumbnail_or_placeholder

__all__ = [
    "HOLDOUT_EVERY", "MAX_DRAWINGS", "MAX_RAW_PNG_BYTES", "PAGE_LIMIT", "RATE_LIMIT_DRAWINGS",
    "RATE_LIMIT_WINDOW_SECONDS", "SCHEMA_VERSION", "THUMBNAIL_SIZE", "DrawingCollectionPaused",
    "DrawingRateLimited", "DrawingStore", "DrawingStoreError", "DrawingStoreFull",
    "DrawingSummary", "Drawings", "collection_enabled", "drawings_path", "export_idx_zip",
    "export_npz", "max_drawings", "thumbnail_or_placeholder",
]
