// Raw argon2id hashes per second on the core this process is pinned to, at
// Latch's parameters (m=19456 KiB, t=2, p=1) and with Latch's concurrency
// (HASH_CONCURRENCY, default 1): the ceiling for POST /login per second.
// Prints one line: BENCH_JSON {"hashes":…,"seconds":…,"perSecond":…}
import { hash } from "@node-rs/argon2";

const warmupS = Number(process.env.BENCH_WARMUP ?? 3);
const durationS = Number(process.env.BENCH_DURATION ?? 10);
const concurrency = Number(process.env.HASH_CONCURRENCY ?? 1);
const params = { algorithm: 2, memoryCost: 19456, timeCost: 2, parallelism: 1 };

async function hashFor(seconds) {
  const until = performance.now() + seconds * 1000;
  let count = 0;
  async function worker(n) {
    while (performance.now() < until) {
      await hash(`bench password ${n} ${count}`, params);
      count += 1;
    }
  }
  const started = performance.now();
  await Promise.all(Array.from({ length: concurrency }, (_, n) => worker(n)));
  return { hashes: count, seconds: (performance.now() - started) / 1000 };
}

await hashFor(warmupS);
const cpuBefore = process.cpuUsage();
const { hashes, seconds } = await hashFor(durationS);
const cpu = process.cpuUsage(cpuBefore);
console.log(`BENCH_JSON ${JSON.stringify({ hashes, seconds, perSecond: hashes / seconds, concurrency, cpuMsPerHash: (cpu.user + cpu.system) / 1000 / hashes })}`);
