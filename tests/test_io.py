import datasets
import pandera.pandas as pa
import pyarrow
import pyarrow.parquet as pq
import pytest

from registry import catalog, io
from registry.ingest import ingest
from schemas.questions import OPTIONS

from .conftest import DEMO


@pytest.fixture(scope="module")
def questions():
    return ingest(catalog.benchmarks(), "demo", DEMO).questions


def test_questions_round_trip_and_load_in_hugging_face_datasets(questions, tmp_path):
    path = io.save("questions", questions, tmp_path)
    assert path == tmp_path / "data/raw/questions.parquet"
    back = io.load("questions", tmp_path)
    assert back["options"].tolist() == questions["options"].tolist()  # ordered letter -> text dicts again
    assert back.drop(columns="options").equals(questions.drop(columns="options"))

    ds = datasets.load_dataset("parquet", data_files=str(path), split="train")
    assert len(ds) == len(questions)
    assert len(datasets.load_dataset(str(path.parent), split="train")) == len(questions)  # the folder holds only the questions
    first = questions.iloc[0]
    assert ds[0]["options"] == [{"letter": k, "text": v} for k, v in first["options"].items()]
    assert sum(c is not None for c in ds["expert_category"]) == questions["expert_category"].notna().sum()


def test_the_parquet_layout_comes_from_the_pandera_schema(questions, tmp_path):
    layout = pq.read_schema(io.save("questions", questions, tmp_path))
    assert layout.field("options").type == OPTIONS
    assert layout.field("n_options").type == pyarrow.int64() and layout.field("qid").type == pyarrow.string()
    assert layout.names == list(io.schema("questions").columns)
    assert not layout.field("qid").nullable and layout.field("context").nullable


def test_an_invalid_frame_is_refused_and_the_previous_file_kept(questions, tmp_path):
    path = io.save("questions", questions, tmp_path)
    before = path.read_bytes()
    broken = questions.assign(answer="?")
    with pytest.raises(pa.errors.SchemaErrors):
        io.save("questions", broken, tmp_path)
    assert path.read_bytes() == before and not list(path.parent.glob("*.tmp"))


def test_an_atomic_directory_is_swapped_whole_or_not_at_all(tmp_path):
    folder = tmp_path / "model"
    with io.atomic_path(folder, directory=True) as tmp:
        (tmp / "weights").write_text("v1")
    with pytest.raises(RuntimeError), io.atomic_path(folder, directory=True) as tmp:
        (tmp / "weights").write_text("v2, half")
        raise RuntimeError("killed")
    assert (folder / "weights").read_text() == "v1" and sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    with io.atomic_path(folder, directory=True) as tmp:
        (tmp / "weights").write_text("v2")
    assert (folder / "weights").read_text() == "v2" and sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_loading_a_missing_dataset_names_its_stage(tmp_path):
    with pytest.raises(catalog.CatalogError, match=r"data/splits/labels.parquet is missing \(dataset 'splits'\)"):
        io.load("splits", tmp_path)
