#!/usr/bin/env bash
# Index the bundled example catalog and search it by text, by image and by catalog item id.
# Run from the repository root after installing: bash examples/quickstart.sh
set -euo pipefail
cd "$(dirname "$0")/.."
LOOKALIKE="${LOOKALIKE:-.venv/bin/lookalike}"
export LOOKALIKE_DB="${LOOKALIKE_DB:-./examples/quickstart.db}"

set +e
"$LOOKALIKE" index examples/catalog.csv
status=$?
set -e
if [ "$status" -eq 3 ]; then
  # The default CLIP weights could not be downloaded (offline). Show the whole pipeline with
  # random weights instead; results only mean something with real weights (see README).
  echo
  echo ">>> No CLIP weights available: continuing with --pretrained random to show the pipeline."
  echo ">>> Image-to-image search of an indexed photo still finds it; text search needs real weights."
  export LOOKALIKE_PRETRAINED=random LOOKALIKE_DB="./examples/quickstart-random.db"
  "$LOOKALIKE" index examples/catalog.csv
elif [ "$status" -ne 0 ]; then
  exit "$status"
fi

echo; echo '$ lookalike search --text "red floral top" --k 5'
"$LOOKALIKE" search --text "red floral top" --k 5
echo; echo '$ lookalike search --image examples/photos/dress-blue-striped.jpg --since 2023-11-15 --until 2023-11-20 --k 3'
"$LOOKALIKE" search --image examples/photos/dress-blue-striped.jpg --since 2023-11-15 --until 2023-11-20 --k 3
echo; echo '$ lookalike search --item-id SKU1000 --k 3'
"$LOOKALIKE" search --item-id SKU1000 --k 3
echo; echo '$ lookalike show --item-id SKU1000'
"$LOOKALIKE" show --item-id SKU1000
echo; echo '$ lookalike stats'
"$LOOKALIKE" stats
