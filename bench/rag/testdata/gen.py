# Generates the default retrieval dataset of bench/rag (BEIR format) from the facts below:
# each fact is one document with one query asked in other words (inflections, synonyms,
# word order), among distractor documents built from the same household vocabulary, so that
# stemming, stop words and rare-term weighting decide the ranking. English and Chinese.
# Run: python3 gen.py  (deterministic; writes home/)
import json, random

random.seed(11)
facts = [
 ("The water heater in the basement was installed in 2019; its anode rod should be replaced every three years.", "how often do we replace the anode of the water heater"),
 ("The boiler pressure must stay between 1.2 and 1.5 bar; top it up with the grey valve under the boiler.", "what pressure should the boiler have"),
 ("The spare house key is kept in the blue flower pot next to the garage door.", "where is the spare key hidden"),
 ("The wifi password for the guest network is printed on the sticker under the router.", "guest wifi password location"),
 ("Garbage collection is on Tuesday mornings; recycling bins are emptied every second Friday.", "which day is the trash picked up"),
 ("The dishwasher filter should be rinsed under warm water once a month to avoid bad smells.", "cleaning the dishwasher filters"),
 ("Our car insurance policy number is KX-4471 and renews every year on the first of March.", "when does the car insurance renew"),
 ("The smoke detectors need new 9 volt batteries every October; there are four of them upstairs.", "smoke alarm battery change"),
 ("The main water shut-off valve is behind the washing machine in the laundry room.", "where can I turn off the water supply"),
 ("The fuse box is in the hallway closet; the kitchen circuit is breaker number seven.", "which breaker controls the kitchen"),
 ("Grandma's apple pie needs 180 degrees for 45 minutes and a pinch of cinnamon in the filling.", "baking temperature for the apple pie"),
 ("The dog's rabies vaccination is due again in June 2027 at the Oak Street veterinary clinic.", "when is the dog vaccinated next"),
 ("The lawn mower takes unleaded petrol and its blade was sharpened last spring.", "what fuel does the mower use"),
 ("The heat pump filter is cleaned every two months; the unit is on the north wall of the house.", "how often should the heat pump filters be cleaned"),
 ("The internet contract with FiberNet can be cancelled with three months notice.", "notice period to cancel the internet"),
 ("Property tax is paid in two instalments, in May and in November, to the city treasury.", "when do we pay the property taxes"),
 ("The children's passports expire in August 2028 and are kept in the red folder.", "kids passport expiry"),
 ("The electricity meter is read on the last day of each quarter; the number is 5521-88.", "electric meter reading schedule"),
 ("The solar panels produce about 4200 kilowatt hours a year and were cleaned in April.", "yearly output of the solar panels"),
 ("The fridge temperature should be set to 4 degrees and the freezer to minus 18.", "right temperature for the refrigerator"),
 ("The gutters are cleared every November after the leaves have fallen.", "when are the gutters cleaned"),
 ("The piano is tuned once a year by Mr. Alvarez, who charges 90 euros.", "who tunes the piano and how much"),
 ("The attic window leaks during heavy rain; the roofer quoted 350 for sealing it.", "quote for fixing the leaking attic window"),
 ("The bicycle tyres should be pumped to 4 bar; the pump is hanging in the shed.", "bike tire pressure"),
 ("The garden sprinklers run at 6 in the morning for twenty minutes from May to September.", "sprinkler schedule in summer"),
 ("The chimney must be swept once a year before winter; the last sweep was in October.", "chimney sweeping frequency"),
 ("The home office printer uses the XL 305 black cartridge, ordered from the stationery shop.", "which ink cartridge does the printer need"),
 ("The cat is allergic to chicken and eats the salmon formula dry food.", "what food is the cat allergic to"),
 ("The oven's self-cleaning program takes three hours and locks the door while running.", "how long does the oven self cleaning take"),
 ("The mortgage rate is fixed at 2.1 percent until 2031 with Hill Bank.", "until when is the mortgage interest fixed"),
 ("The basement dehumidifier tank must be emptied every two days in summer.", "emptying the dehumidifier"),
 ("Winter tyres are stored at the garage on Mill Road and are changed in late October.", "where are the winter tires stored"),
 ("The alarm system code was changed to the old street number plus the year we moved.", "how was the alarm code chosen"),
 ("The washing machine's door seal should be wiped dry after every wash to prevent mould.", "prevent mold in the washer door"),
 ("The apartment deposit of three months' rent is held in a separate savings account.", "where is the rental deposit kept"),
 ("The school bus leaves from the corner of Elm and 5th at 7:40 every weekday.", "what time does the school bus leave"),
 ("The kitchen tap drips because its cartridge is worn; a replacement costs about 25.", "why is the kitchen faucet dripping"),
 ("The family doctor, Dr. Brenner, has consultation hours on Monday and Thursday afternoons.", "when can we see the family doctor"),
 ("The gas grill's propane tank is exchanged at the hardware store for 30.", "where to swap the propane bottle for the barbecue"),
 ("The bathroom fan runs for ten minutes after the light is switched off to remove humidity.", "how long does the bathroom ventilator run"),
]
zh_facts = [
 ("地下室的热水器每三年需要更换一次镁棒。", "热水器镁棒多久更换"),
 ("锅炉的压力应保持在一点二到一点五巴之间。", "锅炉压力应该是多少"),
 ("备用钥匙藏在车库门旁边的蓝色花盆里。", "备用钥匙放在哪里"),
 ("垃圾每周二早上收，可回收垃圾每隔一周的周五收。", "哪天收垃圾"),
 ("冰箱冷藏室温度应设为四度，冷冻室为零下十八度。", "冰箱温度设置多少"),
 ("家庭医生布伦纳医生周一和周四下午门诊。", "家庭医生什么时候看诊"),
 ("车险每年三月一日续保，保单号是KX4471。", "车险什么时候续保"),
 ("烟雾报警器每年十月更换电池，楼上共有四个。", "烟雾报警器电池什么时候换"),
 ("总水阀在洗衣房的洗衣机后面。", "总水阀在哪里"),
 ("狗的狂犬疫苗下次在二零二七年六月接种。", "狗下次打疫苗是什么时候"),
]
words = ("the house kitchen garden basement attic garage water heating boiler filter battery key door window "
         "car bike insurance tax bill contract school doctor cat dog oven fridge washer dryer printer router "
         "light fan tap valve meter panel roof gutter lawn tyre pump shed chimney alarm code pressure temperature "
         "month year week spring summer winter autumn morning evening clean replace check repair order pay renew "
         "every once twice should must need keep store change run use set open close").split()
zh_words = list("房子厨房花园地下室车库水暖气锅炉电池钥匙门窗汽车保险税账单学校医生猫狗烤箱冰箱洗衣机打印机路由器灯风扇阀门电表屋顶每月每年春夏秋冬早晚清洁更换检查维修支付")
corpus, queries, qrels = [], [], []
for i, (text, q) in enumerate(facts):
    corpus.append({"_id": f"f{i}", "title": "", "text": text})
    queries.append({"_id": f"q{i}", "text": q})
    qrels.append((f"q{i}", f"f{i}"))
for i, (text, q) in enumerate(zh_facts):
    corpus.append({"_id": f"z{i}", "title": "", "text": text})
    queries.append({"_id": f"qz{i}", "text": q})
    qrels.append((f"qz{i}", f"z{i}"))
for i in range(260):
    n = random.randint(12, 30)
    corpus.append({"_id": f"d{i}", "title": "", "text": " ".join(random.choice(words) for _ in range(n)).capitalize() + "."})
for i in range(60):
    n = random.randint(10, 24)
    corpus.append({"_id": f"dz{i}", "title": "", "text": "".join(random.choice(zh_words) for _ in range(n)) + "。"})
random.shuffle(corpus)
with open("home/corpus.jsonl", "w") as f:
    for d in corpus:
        f.write(json.dumps(d, ensure_ascii=False) + "\n")
with open("home/queries.jsonl", "w") as f:
    for q in queries:
        f.write(json.dumps(q, ensure_ascii=False) + "\n")
with open("home/qrels/test.tsv", "w") as f:
    f.write("query-id\tcorpus-id\tscore\n")
    for q, d in qrels:
        f.write(f"{q}\t{d}\t1\n")
