// Fastify with no session at all: what the framework Latch is built on costs
// over node:http. POST /login sets a cookie nobody checks, so the harness can
// treat every variant alike.
import Fastify from "fastify";

const app = Fastify({ logger: false });
const user = { id: "1", username: "bench.user", email: null, roles: ["user"], createdAt: new Date(0).toISOString() };

app.get("/protected", async () => ({ message: "Access granted", user }));
app.post("/login", async (_request, reply) => {
  reply.header("set-cookie", "sid=unused; Path=/; HttpOnly; SameSite=Lax");
  return { user };
});

await app.listen({ port: Number(process.env.PORT), host: "127.0.0.1" });
