"""QA loaders on the real shared files, the formats we have no real file for, and bad records with file:line."""
from __future__ import annotations

import json

import pytest

from rag.qa_data import detect_qa_format, load_qa
from rag.types import QAExample, RagError
from tests.conftest import shared


def test_nq_open_jsonl():
    examples = load_qa(shared("nq-open/NQ-open.dev.jsonl"))
    assert len(examples) == 3610
    assert examples[0] == QAExample("NQ-open.dev-1", "when was the last time anyone was on the moon", ("14 December 1972 UTC", "December 1972"))
    assert len(load_qa(shared("nq-open/NQ-open.dev.jsonl"), limit=7)) == 7


def test_nq_open_oracle_gzipped_with_answers_key():
    examples = load_qa(shared("nq-open/nq-open-oracle.jsonl.gz"), limit=3)
    assert examples[0].question == "who got the first nobel prize in physics"
    assert examples[0].answers == ("Wilhelm Conrad Röntgen",)


def test_webquestions_json():
    examples = load_qa(shared("webquestions/devtest.json"))
    assert len(examples) == 189
    assert examples[0] == QAExample("wqr000000", "what is the name of justin bieber brother?", ("Jazmyn Bieber", "Jaxon Bieber"))
    assert len(load_qa(shared("webquestions/trainmodel.json"))) == 2834


def test_dpr_qas_tsv_with_python_lists_and_csv_quoting():
    nq = load_qa(shared("nq-open/topics.dpr.nq.dev.txt"), fmt="dpr-qas")
    assert len(nq) == 8757
    assert nq[0] == QAExample("topics.dpr.nq.dev-0", "who sings does he love me with reba", ("Linda Davis",))
    trivia = load_qa(shared("triviaqa/topics.dpr.trivia.dev.txt"), limit=3)
    assert trivia[2].question == "Ezzard Charles was a world champion in which sport?"
    assert "Boxing" in trivia[2].answers and "Gentleman's sport" in trivia[2].answers  # a csv-quoted line


def test_dpr_qas_csv_with_json_lists(tmp_path):
    path = tmp_path / "qas.csv"
    path.write_text('who wrote hamlet\t["William Shakespeare", "Shakespeare"]\n\nwhat is 2+2\t["4"]\n')
    assert load_qa(path) == [QAExample("qas-0", "who wrote hamlet", ("William Shakespeare", "Shakespeare")), QAExample("qas-1", "what is 2+2", ("4",))]


def test_squad_json():
    examples = load_qa(shared("squad/dev-v1.1.json"))
    assert len(examples) == 10570
    assert examples[0] == QAExample("56be4db0acb8001400a502ec", "Which NFL team represented the AFC at Super Bowl 50?", ("Denver Broncos",))  # 3 annotators, one answer


def test_triviaqa_json(tmp_path):
    path = tmp_path / "wikipedia-dev.json"
    data = {"Data": [{"QuestionId": "tc_1", "Question": "Which Lloyd Webber musical premiered in the US in 1993?", "Answer": {"Value": "Sunset Boulevard", "Aliases": ["Sunset Boulevard", "Sunset Blvd"]}}]}
    path.write_text(json.dumps(data))
    assert detect_qa_format(str(path)) == "triviaqa"
    assert load_qa(path) == [QAExample("tc_1", "Which Lloyd Webber musical premiered in the US in 1993?", ("Sunset Boulevard", "Sunset Blvd"))]


def test_hugging_face_dataset_folder_and_parquet(tmp_path):
    import datasets

    rows = {"question": ["who wrote dune", "capital of france"], "answer": [["Frank Herbert"], ["Paris"]]}
    datasets.Dataset.from_dict(rows).save_to_disk(str(tmp_path / "ds"))
    expected = [QAExample("0", "who wrote dune", ("Frank Herbert",)), QAExample("1", "capital of france", ("Paris",))]
    assert load_qa(tmp_path / "ds") == expected
    trivia_style = {"question": ["q?"], "question_id": ["x1"], "answer": [{"value": "Paris", "aliases": ["Paris", "Paree"]}]}
    datasets.Dataset.from_dict(trivia_style).to_parquet(str(tmp_path / "t.parquet"))
    assert load_qa(tmp_path / "t.parquet") == [QAExample("x1", "q?", ("Paris", "Paree"))]


def test_bad_records_name_file_and_line(tmp_path):
    jsonl = tmp_path / "bad.jsonl"
    jsonl.write_text('{"question": "a?", "answer": ["x"]}\n{"question": "b?", "answer": ["y"]}\n{"question": "c?"}\n')
    with pytest.raises(RagError, match=r"bad\.jsonl:3: answers must be"):
        load_qa(jsonl)
    jsonl.write_text('{"question": "a?", "answer": ["x"]}\n{not json\n')
    with pytest.raises(RagError, match=r"bad\.jsonl:2: invalid JSON"):
        load_qa(jsonl)

    wq = tmp_path / "wq.json"
    wq.write_text('[\n {"qId": "w1", "qText": "a?", "answers": ["x"]},\n {"qId": "w2", "answers": ["y"]}\n]\n')
    with pytest.raises(RagError, match=r"wq\.json:3: missing or empty question"):
        load_qa(wq)

    tsv = tmp_path / "qas.tsv"
    tsv.write_text("q one\t['a']\nq two\tnot a list\n")
    with pytest.raises(RagError, match=r"qas\.tsv:2: the answer column"):
        load_qa(tsv)

    with pytest.raises(RagError, match="not found"):
        load_qa(tmp_path / "missing.jsonl")
    with pytest.raises(RagError, match="nq-open, webquestions"):
        load_qa(jsonl, fmt="mystery")
    with pytest.raises(RagError, match="cannot tell"):
        load_qa(tmp_path / "x.xml")
