"""Session 10 (not committed): synth's SQL-writing stage on tvshow, 1500 prompts, sampled at 0.9, batch 256:
the statement stop on vs off, stats per variant written to $OUT at once."""
import json, os, random, sys, time
import torch
from sqltune.synth import SQL_PROMPT, LEVELS, catalog, _examples_text
from sqltune.schema import schema_text
from sqltune.model import load_model
from sqltune.generate import generate_texts, GenerationStats
from sqltune.extract import is_complete
from sqltune.dataset import load_items

name = sys.argv[1]; per = int(sys.argv[2])
d = f"/root/keep/devsuite/tvshow"; db = f"{d}/tvshow.sqlite"
seeds = load_items(f"{d}/train.jsonl"); cat = catalog(db); schema = schema_text(db); rng = random.Random(0)
prompts = [SQL_PROMPT.format(schema=schema, examples=_examples_text(seeds, rng), table=rng.choice(list(cat.tables)), level=w)
           for w in LEVELS.values() for _ in range(per)]
m, tok, _ = load_model(name)
texts = [tok.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True) for p in prompts]
res = {"model": name, "prompts": len(prompts), "gpu": torch.cuda.get_device_name(0)}
for var, stop, mnt in (("stop", is_complete, 256), ("none", None, 256), ("stop160", is_complete, 160)):
    torch.manual_seed(0); st = GenerationStats(); torch.cuda.synchronize(); t = time.time()
    generate_texts(m, tok, texts, batch_size=256, max_new_tokens=mnt, stop=stop, stats=st, progress=False,
                   temperature=0.9, top_p=0.95)
    torch.cuda.synchronize()
    res[var] = dict(seconds=round(time.time() - t, 1), new_tokens=st.new_tokens, decode_steps=st.decode_steps,
                    eos=st.stopped_eos, statement=st.stopped_statement, length=st.stopped_length)
    print(var, res[var], flush=True)
    json.dump(res, open(os.path.join(os.environ.get("OUT", "/tmp"), "stopgpu.json"), "w"), indent=1)
