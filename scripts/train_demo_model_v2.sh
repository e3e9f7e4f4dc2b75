#!/usr/bin/env bash
# Demo model v2 (models/shapes-t2v) from nothing, in seven resumable stages (about 150 min on 2 CPU cores).
#
#   1. v1's recipe: 2,000 steps from scratch, text encoder trained with the UNet, v1's world
#      (slow motion). The result draws one object of the right colour; its text encoder amplified the
#      colour word and shrank the shape and direction words, so shape and direction stayed at chance.
#   2. The UNet of stage 1 with a fresh text encoder frozen at its seeded initialisation (every word
#      stays distinct), half of each batch at timesteps 400-999, v1's world; stopped at step 1,200 of a
#      5,000-step schedule, when shape was learned (the word-gap probe: shape +54%) but direction not.
#   3. v2's motion without the arrow of time (world v2-flat: faster motion in a narrower box),
#      60% of each batch at timesteps 700-999; stopped at step 700 of 3,000 (direction unused).
#   4. The same at timesteps 880-999, where the first DDIM steps settle the motion; stopped at step
#      700 of 3,000: direction still unused. Diagnosis: fed one noise frame repeated 8 times, the
#      model's x0 is time-symmetric; its temporal attention has no frame positions and its temporal
#      convolutions learned no clock, so "left" stays the time reversal of "right".
#   5. World v2: the background brightens slightly over every clip (scenes.BACKGROUND_RAMP), an
#      arrow of time the model must draw in every pixel of every clip, so it learns a clock; half of
#      each batch at timesteps 850-999; stopped at step 1,000 of 2,500. The clock is learned, but the
#      direction word still moves nothing (word gap +0.0%).
#   6. The direction primer (world primer): one red circle of one size and speed on a centred
#      trajectory, so the four clips differ only in the direction word, at timesteps 900-999 and the full
#      learning rate; stopped at step 300 of 1,000. Stage 5 ignores direction because in the full world
#      the word's reward is spread over random positions, colours and shapes; here it is the whole
#      loss, and the model learns to steer the motion within about 200 steps (a sudden drop of the
#      loss). It forgets the other colours and shapes meanwhile.
#   7. World v2-centring (half of the clips centred, as in the primer, half as in v2), 60% of each batch
#      at timesteps 850-999, a third of the learning rate: colour and shape come back and the direction
#      carries over to every position.
#
# Every stage is deterministic and resumes from its checkpoint folder; run the script again after an
# interruption. WORK (default models/shapes-t2v-stages) holds the stages; the last one exports to OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${WORK:-models/shapes-t2v-stages}
OUT=${OUT:-models/shapes-t2v}
THREADS=${THREADS:-2}
train() { python scripts/train_demo_model.py --threads "$THREADS" "$@"; }

[ -f "$WORK/stage1/model_index.json" ] ||
    train --world v1 --steps 2000 --seed 0 --out "$WORK/stage1" --ckpt-dir "$WORK/stage1-ckpt" --probe-every 0
[ -f "$WORK/stage2/model_index.json" ] ||
    train --world v1 --init-from "$WORK/stage1" --text-encoder frozen --high-noise 0.5 --seed 1 \
        --steps 5000 --stop-at 1200 --ema 0.998 --out "$WORK/stage2" --ckpt-dir "$WORK/stage2-ckpt"
[ -f "$WORK/stage3/model_index.json" ] ||
    train --world v2-flat --init-from "$WORK/stage2" --text-encoder frozen --init-text --high-noise 0.6 \
        --high-noise-from 700 --seed 2 --steps 3000 --stop-at 700 --ema 0.998 --out "$WORK/stage3" \
        --ckpt-dir "$WORK/stage3-ckpt"
[ -f "$WORK/stage4/model_index.json" ] ||
    train --world v2-flat --init-from "$WORK/stage3" --text-encoder frozen --init-text --high-noise 0.6 \
        --high-noise-from 880 --seed 3 --steps 3000 --stop-at 700 --ema 0.998 --probe-every 300 \
        --out "$WORK/stage4" --ckpt-dir "$WORK/stage4-ckpt"
[ -f "$WORK/stage5/model_index.json" ] ||
    train --world v2 --init-from "$WORK/stage4" --text-encoder frozen --init-text --high-noise 0.5 \
        --high-noise-from 850 --seed 4 --steps 2500 --stop-at 1000 --ema 0.998 --probe-every 250 \
        --out "$WORK/stage5" --ckpt-dir "$WORK/stage5-ckpt"
[ -f "$WORK/stage6/model_index.json" ] ||
    train --world primer --init-from "$WORK/stage5" --text-encoder frozen --init-text --high-noise 1.0 \
        --high-noise-from 900 --seed 5 --lr 1e-3 --warmup 20 --steps 1000 --stop-at 300 --ema 0.9 \
        --probe-every 100 --out "$WORK/stage6" --ckpt-dir "$WORK/stage6-ckpt"
train --world v2-centring --init-from "$WORK/stage6" --text-encoder frozen --init-text --high-noise 0.6 \
    --high-noise-from 850 --seed 6 --lr 3e-4 --warmup 20 --steps 1000 --ema 0.995 --probe-every 250 \
    --default-guidance 1.5 --out "$OUT" --ckpt-dir "$WORK/stage7-ckpt" "$@"
