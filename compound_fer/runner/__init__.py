"""The protocol runner: basic phase, continual phase (N class orders x methods), few-shot phase.

Data flows one way: files -> faces -> splits -> basic model -> inputs (cached trunk maps or images) ->
scenario -> strategy -> per-step predictions -> results rows -> tables and figures.

* :mod:`.plan`: the resolved, typed plan of a run (config + overrides + registry, checked once);
* :mod:`.dataset`: the faces a config names and their splits;
* :mod:`.basic`: the basic model every method starts from;
* :mod:`.continual`: one method over one class order, as stages (build, resume, train a step, score,
  finish with the row);
* :mod:`.protocol`: seeds x (basic, continual, few-shot), rows on disk as they complete, the report.
"""

from compound_fer.inputs import Inputs, make_inputs
from compound_fer.runner.basic import basic_labels, build_basic_model, train_basic_phase
from compound_fer.runner.continual import OrderJob, RunFiles, make_evaluator, run_continual
from compound_fer.runner.dataset import Splits, load_dataset, make_splits
from compound_fer.runner.plan import MethodPlan, RunPlan, effective_config, resolve_plan
from compound_fer.runner.protocol import read_row, remove_stale_temp_files, run_fewshot_phase, run_plan, run_protocol
from compound_fer.seeding import seed_everything

__all__ = ["Inputs", "MethodPlan", "OrderJob", "RunFiles", "RunPlan", "Splits", "basic_labels", "build_basic_model",
           "effective_config", "load_dataset", "make_evaluator", "make_inputs", "make_splits", "read_row",
           "remove_stale_temp_files", "resolve_plan", "run_continual", "run_fewshot_phase", "run_plan",
           "run_protocol", "seed_everything", "train_basic_phase"]
