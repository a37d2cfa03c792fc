import { isIPv4, isIPv6 } from "node:net";

/**
 * The client address as Latch stores it: IPv4 truncated to /24, IPv6 to /48,
 * so that session lists and security events can say "from around here"
 * without keeping a precise personal identifier. IPv4-mapped IPv6 addresses
 * are treated as IPv4.
 */
export function truncateAddress(address: string | undefined): string | null {
  if (!address) return null;
  const mapped = address.startsWith("::ffff:") ? address.slice(7) : address;
  if (isIPv4(mapped)) return `${mapped.split(".").slice(0, 3).join(".")}.0`;
  if (isIPv6(address)) {
    const [head = "", tail = ""] = address.split("::");
    const left = head === "" ? [] : head.split(":");
    const right = tail === "" ? [] : tail.split(":");
    const groups = address.includes("::") ? [...left, ...Array(8 - left.length - right.length).fill("0"), ...right] : left;
    return `${groups.slice(0, 3).map((g) => g.replace(/^0+(?=.)/, "").toLowerCase()).join(":")}::`;
  }
  return null;
}
