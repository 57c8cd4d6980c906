"""Stages: the only code that reads a notebook's config. Each stage is a cached step of one notebook's pipeline,
built from the package's functions (which take explicit arguments, never a config), so notebooks read as the
paper's sections and a rerun only redraws.

    from ttc_utils.stages import common, pool, prm_search
    ladder, curves = common.ladder(cfg)
    samples = pool.sample_pool(cfg, ladder)
"""
