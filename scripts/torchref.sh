#!/usr/bin/env bash
# Sourced by the comparison scripts: makes sure the PyTorch reference (torch + torchvision,
# a few GB) is installed in ~/torchref and sets $py to its interpreter. Never a dependency of ssl.
py=~/torchref/bin/python
if ! "$py" -c "import torch, torchvision" 2>/dev/null; then
  echo "setting up the PyTorch reference in ~/torchref"
  python3 -m venv ~/torchref
  ~/torchref/bin/pip install -q torch torchvision
fi
