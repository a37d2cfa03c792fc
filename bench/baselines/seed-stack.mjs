// The seed tutorial's stack, as the tutorial writes it
// (shared/seeds/000_e6849555daff29bd.txt): Express + express-session +
// connect-redis + bcrypt, a mock user list, POST /login, GET /protected,
// POST /logout. Only what current package versions require is changed:
// ESM imports, `{ RedisStore }` (connect-redis 9 has no default export),
// `await redisClient.connect()` (node-redis 4+ does not connect by itself),
// and the port from PORT so the harness can choose it.
//
// A devDependency-only baseline: nothing in src/ imports this.
import bcrypt from "bcrypt";
import { RedisStore } from "connect-redis";
import express from "express";
import session from "express-session";
import { createClient } from "redis";

const redisClient = createClient({ url: process.env.REDIS_URL });
await redisClient.connect();

const app = express();
app.use(express.json());
app.use(
  session({
    store: new RedisStore({ client: redisClient }),
    secret: process.env.SESSION_SECRET,
    resave: false,
    saveUninitialized: false,
    cookie: { httpOnly: true, secure: false, maxAge: 30 * 60 * 1000 }, // 30 min expiry
  }),
);

// Mock database
const users = [{ id: 1, username: "user1", passwordHash: bcrypt.hashSync("password", 10) }];

// Login Route
app.post("/login", async (req, res) => {
  const { username, password } = req.body;
  const user = users.find((u) => u.username === username);
  if (!user || !(await bcrypt.compare(password, user.passwordHash))) {
    return res.status(401).json({ message: "Invalid credentials" });
  }
  req.session.userId = user.id;
  res.json({ message: "Login successful" });
});

// Protected Route
app.get("/protected", (req, res) => {
  if (!req.session.userId) {
    return res.status(401).json({ message: "Unauthorized" });
  }
  res.json({ message: "Access granted" });
});

// Logout Route
app.post("/logout", (req, res) => {
  req.session.destroy(() => res.json({ message: "Logged out" }));
});

const server = app.listen(Number(process.env.PORT ?? 3000), "127.0.0.1", () => console.log("Server running on port " + (process.env.PORT ?? 3000)));
