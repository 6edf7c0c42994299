# HSIseg's progressive learning with pseudo-labels (Zhou et al. §3.5, Fig. 5; Table 3) as Make targets.
# Included from examples/Makefile; run in the folder that should hold the outputs, e.g.
#   make -f examples/Makefile hsiseg-salinasA      small CPU version: 3 seeds, 4 rounds (minutes)
#   make -f examples/Makefile hsiseg-ip            Indian Pines as in Table 3: 14 rounds (GPU)
#   make -f examples/Makefile hsiseg-pu            Pavia University as in Table 3: 8 rounds (GPU)
# Each seed: prep → split (10 per class, no validation) → train → predict (the initial stage), then
# `hsi pseudolabel --iterations N` (pseudolabel → fine-tune from the last weights → predict, every
# round kept on disk), then `hsi evaluate` of the initial and the final predictions over all seeds,
# always on the original ground truth's test pixels. Every step is a no-op when already done.
# HSI only: the simulated LiDAR the paper used for IP and PU was derived from the ground truth.

HSI ?= hsi
HSISEG_DEVICE ?= auto
HSISEG_SEEDS ?= 0 1 2
# Fine-tuning epochs per pseudo-label round for the paper targets (the paper does not say; empty
# = the model's Table 3 epochs in every round).
HSISEG_ROUND_EPOCHS ?=

# SalinasA on a laptop CPU: the default `hsiseg` (33 px windows, no 144 resize), τ2 0.7.
HSISEG_SALINASA_EPOCHS ?= 100
HSISEG_SALINASA_ROUND_EPOCHS ?= 20
HSISEG_SALINASA_ROUNDS ?= 4
HSISEG_SALINASA_MODEL_ARGS ?= {}
HSISEG_THREADS ?= 2

.PHONY: hsiseg-salinasA hsiseg-ip hsiseg-pu

# $(call hsiseg_loop,SCENE,PCA,MODEL,TAU2,ROUNDS,TRAIN OPTIONS,ROUND OPTIONS)
define hsiseg_loop
	set -eu; initial=""; final=""; \
	for seed in $(HSISEG_SEEDS); do \
	  split=$$($(HSI) prep "$$($(HSI) fetch $(1))" --pca $(2) | $(HSI) split --per-class 10 --val 0 --seed $$seed); \
	  first=$$($(HSI) train "$$split" --model $(3) --seed $$seed --device $(HSISEG_DEVICE) $(6) \
	           | $(HSI) predict --device $(HSISEG_DEVICE)); \
	  last=$$($(HSI) pseudolabel "$$first" --tau $(4) --zeta 0.005 --iterations $(5) \
	          --device $(HSISEG_DEVICE) $(7)); \
	  initial="$$initial $$first"; final="$$final $$last"; \
	done; \
	echo "initial stage:" >&2; $(HSI) evaluate $$initial; \
	echo "after $(5) pseudo-label rounds:" >&2; $(HSI) evaluate $$final
endef

HSISEG_SALINASA_TRAIN = --epochs $(HSISEG_SALINASA_EPOCHS) --threads $(HSISEG_THREADS) \
	--model-args '$(HSISEG_SALINASA_MODEL_ARGS)'
HSISEG_SALINASA_ROUND = --epochs $(HSISEG_SALINASA_ROUND_EPOCHS) --threads $(HSISEG_THREADS)

hsiseg-salinasA:
	$(call hsiseg_loop,salinasA,30,hsiseg,0.7,$(HSISEG_SALINASA_ROUNDS),$(HSISEG_SALINASA_TRAIN),$(HSISEG_SALINASA_ROUND))

hsiseg-ip:
	$(call hsiseg_loop,indian_pines,30,hsiseg-ip,0.7,14,,$(if $(HSISEG_ROUND_EPOCHS),--epochs $(HSISEG_ROUND_EPOCHS)))

hsiseg-pu:
	$(call hsiseg_loop,paviaU,15,hsiseg-pu,0.9,8,,$(if $(HSISEG_ROUND_EPOCHS),--epochs $(HSISEG_ROUND_EPOCHS)))
