"""The guarantees users and scripts rely on (DESIGN.md §1, and issue 9's hardening), each with the
tests that prove it — kept as data, and checked so that the list cannot rot: every test named
exists, and every quoted guarantee is still worded so in ../shared/DESIGN.md (when present).

A test id is `tests/FILE.py::NAME` (a module-level test function, parametrized or not) or
`tests/FILE.py::CLASS::NAME`. Tests marked slow run in the full tier.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
DESIGN = TESTS.parents[1] / "shared" / "DESIGN.md"


@dataclass(frozen=True)
class Guarantee:
    source: str  # "DESIGN.md §1" (then `quote` is its wording there) or "issue 9"
    quote: str
    tests: tuple[str, ...]


GUARANTEES = (
    Guarantee("DESIGN.md §1", "prints exactly one line on stdout: the absolute path of what it wrote", (
        "tests/test_cli_pipe.py::test_mission_line_on_synthetic_scene",
        "tests/test_cli_pipe.py::test_salinas_a_acceptance_pipe",
        "tests/test_pseudolabel.py::test_command_writes_a_layer_and_prints_its_path",
        "tests/test_crash_safety.py::test_kill_at_publication",
    )),
    Guarantee("DESIGN.md §1", "`--json` replaces that line by one JSON object", (
        "tests/test_cli_pipe.py::test_mission_line_on_synthetic_scene",
        "tests/test_evaluate.py::test_terminal_csv_latex_markdown_and_json_hold_the_same_table",
    )),
    Guarantee("DESIGN.md §1", "A command whose main input is omitted or given as `-` reads one path from stdin", (
        "tests/test_cli_pipe.py::test_mission_line_on_synthetic_scene",
        "tests/test_cli_pipe.py::test_empty_stdin_is_an_error",
        "tests/test_plot.py::test_default_name_no_silent_overwrite_and_stdin",
    )),
    Guarantee("DESIGN.md §1", "Progress bars, tables, warnings and logs go to stderr, never stdout", (
        "tests/test_cli_pipe.py::test_mission_line_on_synthetic_scene",
        "tests/test_cli_pipe.py::test_usage_errors_exit_2",
        "tests/test_datasets.py::test_cli_table_goes_to_stderr",
    )),
    Guarantee("DESIGN.md §1", "Exit codes: 0 ok; 1 data or runtime error, printed as one `Error: …` line", (
        "tests/test_cli_pipe.py::test_error_lines_from_a_real_process",
        "tests/test_cli_pipe.py::test_usage_errors_exit_2",
        "tests/test_checkpoint.py::test_damaged_or_foreign_file_is_a_one_line_error",
        "tests/test_integrity.py::test_checkpoint_metadata_is_checked",
        "tests/test_fuzz_readers.py::test_huge_declared_shapes_under_a_memory_limit",
        "tests/test_evaluate.py::test_hostile_metrics_files_are_one_line_errors",
    )),
    Guarantee("DESIGN.md §1", "A traceback only with `HSI_DEBUG=1`", (
        "tests/test_cli_pipe.py::test_error_lines_from_a_real_process",
    )),
    Guarantee("DESIGN.md §1", "Outputs are never overwritten silently (`--overwrite`)", (
        "tests/test_cli_pipe.py::test_outputs_never_overwritten_silently",
        "tests/test_plot.py::test_default_name_no_silent_overwrite_and_stdin",
        "tests/test_store.py::test_layers_are_written_once",
        "tests/test_integrity.py::test_evaluate_never_overwrites_silently",
    )),
    Guarantee("DESIGN.md §1", "a job killed mid-write never leaves an artifact that looks complete", (
        "tests/test_crash_safety.py::test_random_kill",
        "tests/test_crash_safety.py::test_kill_at_publication",
        "tests/test_crash_safety.py::test_kill_at_every_rename",
        "tests/test_crash_safety.py::test_many_random_kills",
        "tests/test_crash_safety.py::test_random_kills_of_the_console_script",
        "tests/test_crash_safety.py::test_replacing_a_file_artifact_is_one_atomic_step",
        "tests/test_store.py::test_atomic_path_leaves_nothing_on_failure",
        "tests/test_store.py::test_info_reports_a_leftover_temporary_store",
        "tests/test_resume.py::test_sigkill_then_resume_equals_uninterrupted_run",
    )),
    Guarantee("DESIGN.md §1", "Re-running a finished step with the same inputs is cheap or a no-op", (
        "tests/test_cli_pipe.py::test_mission_line_on_synthetic_scene",
        "tests/test_engine.py::test_repeating_a_prediction_is_a_no_op",
        "tests/test_engine.py::test_rerunning_a_finished_torch_training_is_a_no_op",
        "tests/test_pseudolabel.py::test_default_name_and_rerun_is_a_no_op",
        "tests/test_integrity.py::test_adding_layers_invalidates_nothing",
        "tests/test_crash_safety.py::test_rerunning_a_finished_plot_is_a_no_op",
    )),
    Guarantee("DESIGN.md §1", "Every artifact records its provenance: command line, hsicli version, inputs (path "
                              "and content fingerprint), time", (
        "tests/test_integrity.py::test_every_artifact_records_its_provenance",
        "tests/test_checkpoint.py::test_metadata_reads_with_safe_open_alone",
        "tests/test_plot.py::test_png_records_provenance",
    )),
    Guarantee("issue 9", "every reader: hostile input ends in one clear error or a correct result, never a "
                         "traceback, a hang, or memory blown by a header's claim", (
        "tests/test_fuzz_readers.py::test_mutated_files",
        "tests/test_fuzz_readers.py::test_truncated_files",
        "tests/test_fuzz_readers.py::test_wrong_magic",
        "tests/test_fuzz_readers.py::test_lying_envi_headers",
        "tests/test_fuzz_readers.py::test_lying_npy_headers",
        "tests/test_fuzz_readers.py::test_mat_v5_of_random_variables",
        "tests/test_fuzz_readers.py::test_mat_v73_of_random_variables",
        "tests/test_fuzz_readers.py::test_npz_of_random_variables",
        "tests/test_fuzz_readers.py::test_prep_gives_an_error_or_a_finite_store",
        "tests/test_fuzz_readers.py::test_huge_declared_shapes_under_a_memory_limit",
        "tests/test_fuzz_readers.py::test_error_naming_garbage_arrays_is_one_line",
        "tests/test_readers.py::test_lying_envi_header_errors_before_allocating",
    )),
    Guarantee("issue 9", "a full disk: one-line error, exit 1, nothing half-written, the previous artifact kept", (
        "tests/test_crash_safety.py::test_full_disk_is_one_line_and_leaves_the_previous_state",
        "tests/test_crash_safety.py::test_full_disk_in_the_console_script",
        "tests/test_crash_safety.py::test_any_disk_limit_either_succeeds_or_fails_cleanly",
        "tests/test_crash_safety.py::test_full_disk_error_names_the_output",
        "tests/test_store.py::test_failed_store_creation_leaves_nothing",
    )),
    Guarantee("issue 9", "a content fingerprint of the immutable parts (cube, ground truth, fitted transform) "
                         "checked on open", (
        "tests/test_integrity.py::test_recorded_fingerprints_are_content_fingerprints",
        "tests/test_integrity.py::test_train_refuses_a_changed_store",
        "tests/test_integrity.py::test_predict_refuses_a_changed_store",
        "tests/test_integrity.py::test_info_verify_names_the_changed_part",
    )),
    Guarantee("issue 9", "layers are written once, fingerprinted on their own; adding a layer invalidates nothing", (
        "tests/test_store.py::test_layers_are_written_once",
        "tests/test_store.py::test_tampered_layer_is_detected",
        "tests/test_integrity.py::test_a_changed_split_is_refused",
        "tests/test_integrity.py::test_adding_layers_invalidates_nothing",
    )),
    Guarantee("issue 9", "checkpoint metadata disagreeing with its tensors, a newer schema, a prediction whose "
                         "scene or layer changed since: a clear error naming what differs", (
        "tests/test_checkpoint.py::test_tensors_disagreeing_with_model_args_are_a_clear_error",
        "tests/test_integrity.py::test_checkpoint_metadata_is_checked",
        "tests/test_integrity.py::test_classical_model_missing_a_class_predicts_with_every_class",
        "tests/test_store.py::test_newer_schema_is_a_clear_error",
        "tests/test_integrity.py::test_prediction_from_a_newer_schema",
        "tests/test_integrity.py::test_a_store_prepared_again_since_the_prediction_is_refused",
        "tests/test_integrity.py::test_a_split_replaced_since_the_prediction_is_refused",
    )),
    Guarantee("issue 9", "safetensors headers are read with size limits; metadata is parsed as data, never "
                         "evaluated; no pickle or eval in the code base", (
        "tests/test_checkpoint.py::test_damaged_or_foreign_file_is_a_one_line_error",
        "tests/test_checkpoint.py::test_no_pickle_or_torch_load_in_the_package",
        "tests/test_integrity.py::test_damaged_checkpoint_bytes",
        "tests/test_integrity.py::test_deeply_nested_header_is_one_line",
        "tests/test_integrity.py::test_no_eval_or_exec_in_the_package",
        "tests/test_readers.py::test_object_arrays_are_never_unpickled",
    )),
    Guarantee("issue 9", "paths recorded in artifacts are only read, never written through", (
        "tests/test_integrity.py::test_predict_never_writes_where_the_checkpoint_points",
        "tests/test_integrity.py::test_evaluate_never_writes_where_the_prediction_points",
        "tests/test_integrity.py::test_pseudolabel_never_writes_into_another_store",
        "tests/test_crash_safety.py::test_random_kill",
    )),
    Guarantee("issue 9", "concurrent writers on one store serialise or fail cleanly, never a store that mixes them", (
        "tests/test_concurrency.py::test_two_writers",
        "tests/test_concurrency.py::test_two_writers_many_rounds",
        "tests/test_store.py::test_concurrent_layer_writers",
    )),
    Guarantee("issue 17", "every numeric option declares its range; a value outside it, or a combination that "
                          "cannot work, exits 2 with one line naming the option, before any data is read", (
        "tests/test_options.py::test_every_numeric_option_declares_a_range",
        "tests/test_options.py::test_out_of_range_values_are_usage_errors",
        "tests/test_options.py::test_model_dependent_patch_is_checked_before_reading",
        "tests/test_options.py::test_split_option_combinations_are_usage_errors",
        "tests/test_cli_pipe.py::test_ratio_outside_unit_interval",
    )),
    Guarantee("issue 17", "no silent data loss: values float32 cannot hold are refused naming how many and "
                          "where, or converted with the loss stated; unreadable ground truth is refused", (
        "tests/test_prep.py::test_integers_float32_cannot_hold_are_refused_or_their_loss_stated",
        "tests/test_prep.py::test_values_beyond_float32_are_refused_naming_them",
        "tests/test_fuzz_readers.py::test_prep_gives_an_error_or_a_finite_store",
        "tests/test_readers.py::test_ground_truth_that_is_no_numeric_array_is_refused",
        "tests/test_fuzz_readers.py::test_npz_of_random_variables",
        "tests/test_fuzz_readers.py::test_mat_v5_of_random_variables",
    )),
    Guarantee("issue 17", "no NaN passed along: non-finite weights are refused on load, a non-finite loss "
                          "stops training with the resume state kept", (
        "tests/test_integrity.py::test_non_finite_weights_are_refused_by_every_loader",
        "tests/test_resume.py::test_a_non_finite_loss_stops_training_and_keeps_the_state",
    )),
    Guarantee("issue 17", "layer names are an allowlist, checked as flags (exit 2) and when read from disk", (
        "tests/test_cli_pipe.py::test_layer_names_outside_the_allowlist_are_usage_errors",
        "tests/test_store.py::test_layers_are_written_once",
        "tests/test_store.py::test_a_layer_name_on_disk_outside_the_allowlist_is_refused",
    )),
    Guarantee("issue 17", "Ctrl-C exits 130 with one line saying what was interrupted and what was kept", (
        "tests/test_cli_pipe.py::test_ctrl_c_says_what_was_interrupted_and_kept",
        "tests/test_resume.py::test_sigkill_then_resume_equals_uninterrupted_run",
    )),
    Guarantee("issue 17", "temporaries left by a killed writer are listed by `hsi info` and removed by "
                          "`--clean` only when their writer is gone", (
        "tests/test_crash_safety.py::test_info_lists_and_cleans_what_killed_writers_left",
    )),
    Guarantee("issue 17", "no internal error for a damaged schema, a FIFO, an identical run racing, a "
                          "MemoryError or a library that cannot be loaded", (
        "tests/test_store.py::test_a_schema_that_is_no_whole_number_is_damage_not_a_newer_version",
        "tests/test_integrity.py::test_prediction_from_a_newer_schema",
        "tests/test_readers.py::test_a_fifo_is_refused_instead_of_read_for_ever",
        "tests/test_engine.py::test_an_identical_prediction_published_meanwhile_is_a_no_op",
        "tests/test_concurrency.py::test_two_identical_runs_both_succeed",
        "tests/test_cli_pipe.py::test_memory_and_library_failures_are_one_line_errors",
    )),
    Guarantee("issue 17", "a run whose memory need exceeds the memory available, or a checkpoint whose record "
                          "contradicts its tensors, is refused in one line before anything is allocated", (
        "tests/test_memory.py::test_refused_in_one_line_under_an_address_space_limit",
        "tests/test_memory.py::test_refusal_names_the_memory_available_and_its_limit",
        "tests/test_memory.py::test_available_memory_follows_the_address_space_limit",
        "tests/test_memory.py::test_a_run_that_fits_is_not_refused",
        "tests/test_memory.py::test_predicting_a_scene_whose_row_blocks_cannot_fit_is_refused",
        "tests/test_memory.py::test_declared_activation_bounds_are_lower_bounds",
    )),
    Guarantee("issue 17", "a store that lies about itself is refused at once: each array's metadata is checked "
                          "against the store's attributes and the other arrays before any data is read; damaged "
                          "data is one clear error where it is read, never an internal error", (
        "tests/test_fuzz_stores.py::test_lying_scene_store",
        "tests/test_fuzz_stores.py::test_lying_prediction_store",
        "tests/test_fuzz_stores.py::test_the_issues_stores_are_refused_at_once_by_the_console_script",
        "tests/test_fuzz_stores.py::test_random_scene_store_edits",
        "tests/test_fuzz_stores.py::test_random_prediction_store_edits",
    )),
)


@cache
def _definitions(path: Path) -> frozenset[str]:
    """Functions defined in a file: 'NAME' and 'CLASS::NAME' (read with ast, nothing imported)."""
    found = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            found.add(node.name)
        elif isinstance(node, ast.ClassDef):
            found |= {f"{node.name}::{item.name}" for item in node.body
                      if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef))}
    return frozenset(found)


def _exists(test_id: str) -> bool:
    """Whether `test_id` names a test pytest collects: a test_* function in a tests/test_*.py file."""
    file, _, name = test_id.partition("::")
    path = TESTS.parent / file
    return (file.startswith("tests/test_") and path.is_file() and name.split("::")[-1].startswith("test_")
            and name in _definitions(path))


@pytest.mark.parametrize("guarantee", GUARANTEES, ids=[g.quote[:40] for g in GUARANTEES])
def test_every_listed_test_exists(guarantee):
    assert guarantee.tests, f"no test proves {guarantee.quote!r}"
    missing = [test_id for test_id in guarantee.tests if not _exists(test_id)]
    assert missing == [], f"listed for {guarantee.quote!r} but not found: {missing}"


def _normalised(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def test_quotes_are_still_the_design_wording():
    if not DESIGN.is_file():
        pytest.skip(f"{DESIGN} is not present")
    text = _normalised(DESIGN.read_text())
    section = text[text.index("## 1."):text.index("## 2.")]
    stale = [g.quote for g in GUARANTEES if g.source == "DESIGN.md §1" and _normalised(g.quote) not in section]
    assert stale == [], "DESIGN.md §1 no longer says this; update the list"


def test_the_lookup_rejects_what_does_not_exist():
    assert _exists("tests/test_guarantees.py::test_every_listed_test_exists")
    assert not _exists("tests/test_guarantees.py::test_no_such_test")
    assert not _exists("tests/test_nowhere.py::test_every_listed_test_exists")
    assert not _exists("tests/harness.py::snapshot") and not _exists("tests/test_guarantees.py::_exists")
