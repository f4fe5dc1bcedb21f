# Two commands on a fresh machine: `make demo` and `make test`.
# Both create .venv with the machine's python3 (3.11) and install the project into it, at the tested
# versions of constraints.txt (pyproject.toml declares the compatible ranges).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# The data home: where the shipped recipes look for their stores (paper recipes: $(VDATRAIN_DATA)/stores,
# the demos: $(VDATRAIN_DATA)/demo/stores), whatever the current folder.
VDATRAIN_DATA ?= $(HOME)/vdatrain-data
export VDATRAIN_DATA
DEMO   ?= $(VDATRAIN_DATA)/demo

.PHONY: demo test bench clean-demo paper-check paper-data paper-replica

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q --durations=12

# The main job on embedded default data: generate the synthetic replicas of the four raw layouts
# (with exact flow), save a preview picture of each, ingest them into stores (frames, labels, class
# counts; BDDVid by matching BDD10k images to their videos), compute DIS optical flow with validity
# for every store, save a flow picture, describe and verify one store; then train the `demo` recipe
# (source-only, synthetic VIPER), adapt it with `demo-hrda-mic` (HRDA+MIC self-training towards the
# synthetic Cityscapes-Seq) and, started from the same source-only weights, the video variant $(VIDEO)
# (HRDA+MIC with flow-refined pseudo-labels); evaluate each on the synthetic Cityscapes-Seq val set
# (mIoU and temporal metrics) and print the table (also as CSV and a bar chart in $(DEMO)/report).
VIDEO ?= demo-hrda-mic-consistency
FP := $(VENV)/bin/flowprep
VT := $(VENV)/bin/vdatrain
demo: $(STAMP)
	$(FP) synth --out $(DEMO)/raw --scale demo --seed 0
	$(FP) synth-preview $(DEMO)/raw --out $(DEMO)/preview
	$(FP) ingest viper --root $(DEMO)/raw --split train --out $(DEMO)/stores/viper_train.zarr
	$(FP) ingest synthia-seq --root $(DEMO)/raw --split train --out $(DEMO)/stores/synthia-seq_train.zarr
	$(FP) ingest cityscapes-seq --root $(DEMO)/raw --split train --out $(DEMO)/stores/cityscapes-seq_train.zarr
	$(FP) ingest cityscapes-seq --root $(DEMO)/raw --split val --out $(DEMO)/stores/cityscapes-seq_val.zarr
	$(FP) build-bddvid --bdd10k $(DEMO)/raw --bdd100k $(DEMO)/raw/bdd100k/videos --from-splits train,val \
	    --split train --out $(DEMO)/stores/bddvid_train.zarr
	$(FP) build-bddvid --bdd10k $(DEMO)/raw --bdd100k $(DEMO)/raw/bdd100k/videos --from-splits train,val \
	    --split val --out $(DEMO)/stores/bddvid_val.zarr
	for s in viper_train synthia-seq_train cityscapes-seq_train cityscapes-seq_val bddvid_train bddvid_val; do \
	    $(FP) flow $(DEMO)/stores/$$s.zarr --model dis --workers 2 || exit 1; done
	$(FP) flow-show $(DEMO)/stores/cityscapes-seq_val.zarr --sample frankfurt_000000_000294 \
	    --out $(DEMO)/preview/flow-cityscapes-seq.png
	$(FP) inspect $(DEMO)/stores/cityscapes-seq_val.zarr
	$(FP) verify $(DEMO)/stores/cityscapes-seq_val.zarr
	$(VT) fit demo --set data_root=$(DEMO)/stores --run-dir $(DEMO)/runs/demo
	$(VT) eval demo --set data_root=$(DEMO)/stores --ckpt $(DEMO)/runs/demo/checkpoint.pt --out $(DEMO)/runs/demo/eval
	$(VT) fit demo-hrda-mic --set data_root=$(DEMO)/stores --set model.init=$(DEMO)/runs/demo/checkpoint.pt \
	    --run-dir $(DEMO)/runs/demo-hrda-mic
	$(VT) eval demo-hrda-mic --set data_root=$(DEMO)/stores --set model.init=$(DEMO)/runs/demo/checkpoint.pt \
	    --ckpt $(DEMO)/runs/demo-hrda-mic/checkpoint.pt --out $(DEMO)/runs/demo-hrda-mic/eval
	$(VT) fit $(VIDEO) --set data_root=$(DEMO)/stores --set model.init=$(DEMO)/runs/demo/checkpoint.pt \
	    --run-dir $(DEMO)/runs/$(VIDEO)
	$(VT) eval $(VIDEO) --set data_root=$(DEMO)/stores --set model.init=$(DEMO)/runs/demo/checkpoint.pt \
	    --ckpt $(DEMO)/runs/$(VIDEO)/checkpoint.pt --out $(DEMO)/runs/$(VIDEO)/eval
	$(VT) report $(DEMO)/runs/demo $(DEMO)/runs/demo-hrda-mic $(DEMO)/runs/$(VIDEO) --out $(DEMO)/report
	$(VT) predict demo-hrda-mic --set data_root=$(DEMO)/stores --ckpt $(DEMO)/runs/demo-hrda-mic/checkpoint.pt \
	    $$(ls $(DEMO)/raw/bdd100k/videos/val/*.mov | head -1) --out $(DEMO)/predict
	@echo "overlay video of the adapted model on a synthetic BDD100K video: $$(ls $(DEMO)/predict/*/overlay.mp4)"

# Paper recipes at their real geometry, on the CPU: the full-resolution replicas (2048x1024 Cityscapes-Seq,
# 1920x1080 VIPER, 1280x760 Synthia-Seq, 1280x720 BDD10k + BDD100K videos; paper-replica), ingested with the
# frames and flows every shipped recipe reads (paper-data), then `vdatrain check` of one recipe of every distinct
# combination of parts per architecture (spread over the four shifts) with the narrow check networks, one
# training iteration each (every part is active from the first; `vdatrain check` says what it changed):
# PAPER_CHECK selects (default --families, two checks at a time with one thread each; CI runs --cover, the
# fewest recipes that check every part and geometry; e.g. PAPER_CHECK='dlv2-hrda-mom-*'). Each stage is skipped
# when its output is complete, so a second run only checks. Table: $(FULL)/paper-check.md.
FULL ?= paper-data
PAPER_CHECK ?= --families --jobs 2 --threads 1
paper-replica: $(STAMP)
	test -f $(FULL)/raw/_truth/synth.json || $(FP) synth --out $(FULL)/raw --scale full --seed 0 --workers 2
paper-data: paper-replica
	$(FP) ingest viper --root $(FULL)/raw --split train --out $(FULL)/stores/viper_train.zarr
	$(FP) ingest synthia-seq --root $(FULL)/raw --split train --out $(FULL)/stores/synthia-seq_train.zarr
	$(FP) ingest cityscapes-seq --root $(FULL)/raw --split train --offsets -2,-1,0,1 \
	    --out $(FULL)/stores/cityscapes-seq_train.zarr
	$(FP) ingest cityscapes-seq --root $(FULL)/raw --split val --out $(FULL)/stores/cityscapes-seq_val.zarr
	for split in train val; do $(FP) build-bddvid --bdd10k $(FULL)/raw --bdd100k $(FULL)/raw/bdd100k/videos \
	    --from-splits train,val --split $$split --out $(FULL)/stores/bddvid_$$split.zarr || exit 1; done
	for s in viper_train synthia-seq_train cityscapes-seq_val bddvid_train bddvid_val; do \
	    $(FP) flow $(FULL)/stores/$$s.zarr --model dis --workers 2 || exit 1; done
	$(FP) flow $(FULL)/stores/cityscapes-seq_train.zarr --model dis --workers 2 --pairs bwd:1,bwd:1@-1,fwd:1
paper-check: paper-data
	$(VT) check $(PAPER_CHECK) --narrow --iters 1 --set data_root=$(FULL)/stores --table $(FULL)/paper-check.md \
	    --json $(FULL)/paper-check.json

bench: $(STAMP)
	$(PY) bench/loader.py
	$(PY) bench/augment.py
	$(PY) bench/domain_gap.py --raw $(DEMO)/raw
	$(PY) bench/bddvid.py
	$(PY) bench/flow.py
	$(PY) bench/train_step.py
	$(PY) bench/adaptation.py

clean-demo:
	rm -rf $(DEMO)
