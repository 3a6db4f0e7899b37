"""The model stack, bottom up: the settings (:mod:`.config`), fused helper ops (:mod:`.fused`), the
neural memory layer (:mod:`.memory`), the paper's blocks (:mod:`.blocks`), the output heads
(:mod:`.heads`), the forecasting network (:mod:`.network`), its Lightning module
(:mod:`.lightning_module`) and the stream memory a trained network carries at test time
(:mod:`.stream_memory`). Nothing here knows of frames, recipes or the online benchmark."""
