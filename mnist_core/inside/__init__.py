"""Inside the network: a saved run's weights, run layer by layer in plain numpy.

The server never loads TensorFlow or Keras, so the "Inside the network" page reads the
files the training worker writes (`mnist_core.training.snapshots`) and computes the rest
itself, in a few milliseconds per drawing:

- `network`: `weights.npz` -> `Network`, whose forward pass keeps every layer's output and
  whose backward pass gives the exact gradient of the logits with respect to the input;
- `saliency`: which pixels made the network pick its digit over the runner-up;
- `fool`: the input shifted, turned, thickened, thinned or noisy, and where it breaks;
- `snapshot_files`: the snapshots saved while training, for "watch the features form";
- `files`: bounded, checked npz reading (faults raise `InsideError`) and atomic writing.

The names below are the ones the page, its helpers and the worker use.
"""

from mnist_core.inside.files import InsideError, read_npz, write_npz_atomically
from mnist_core.inside.fool import (
    MAX_NOISE,
    MAX_ROTATION,
    MAX_SHIFT,
    MAX_THICKNESS,
    SCANS,
    BreakingPoint,
    Perturbation,
    breaking_points,
    center_of_mass,
    perturb,
    shift,
)
from mnist_core.inside.network import (
    LAYERS_KEY,
    NetLayer,
    Network,
    Trace,
    layers_json,
    load_network,
    random_network,
    weight_key,
)
from mnist_core.inside.saliency import Saliency, saliency
from mnist_core.inside.snapshot_files import (
    SNAPSHOT_UNITS,
    Sample,
    Snapshot,
    read_sample,
    read_snapshots,
    read_start_kernel,
    sample_indices,
    unit_images,
)

# The files a run saved for this page are named by the run layout; re-exported for the page.
from mnist_core.runs.folder import (
    SAMPLE_FILE,
    SNAPSHOTS_DIR,
    START_FILE,
    WEIGHTS_FILE,
    snapshot_name,
)

__all__ = [
    "LAYERS_KEY", "MAX_NOISE", "MAX_ROTATION", "MAX_SHIFT", "MAX_THICKNESS", "SAMPLE_FILE",
    "SCANS", "SNAPSHOTS_DIR", "SNAPSHOT_UNITS", "START_FILE", "WEIGHTS_FILE", "BreakingPoint",
    "InsideError", "NetLayer", "Network", "Perturbation", "Saliency", "Sample", "Snapshot",
    "Trace", "breaking_points", "center_of_mass", "layers_json", "load_network", "perturb",
    "random_network", "read_npz", "read_sample", "read_snapshots", "read_start_kernel",
    "saliency", "sample_indices", "shift", "snapshot_name", "unit_images", "weight_key",
    "write_npz_atomically",
]
