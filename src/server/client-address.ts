import { isIPv4, isIPv6 } from "node:net";

/**
 * The client address as Latch stores it: IPv4 truncated to /24, IPv6 to /48,
 * so that session lists and security events can say "from around here"
 * without keeping a precise personal identifier. IPv4-mapped IPv6 addresses
 * are treated as IPv4.
 */
export function truncateAddress(address: string | undefined): string | null {
  if (!address) return null;
  const mapped = unmapped(address);
  if (isIPv4(mapped)) return `${mapped.split(".").slice(0, 3).join(".")}.0`;
  if (isIPv6(address)) return `${ipv6Groups(address).slice(0, 3).join(":")}::`;
  return null;
}

/**
 * The key a client address is throttled under: an IPv4 address as it is,
 * an IPv6 address by its /64 (`2001:db8:1:2::/64`). One subscriber, host or
 * VM gets a whole /64, so keying by the full address would let it rotate
 * through 2^64 addresses and never meet a per-address limit. IPv4-mapped
 * IPv6 (`::ffff:198.51.100.7`, what a dual-stack socket reports) counts as
 * the IPv4 address.
 *
 * @example
 * throttleAddress("2001:db8:1:2:abcd::9"); // "2001:db8:1:2::/64"
 * throttleAddress("::ffff:198.51.100.7");  // "198.51.100.7"
 */
export function throttleAddress(address: string): string {
  const mapped = unmapped(address);
  if (isIPv4(mapped)) return mapped;
  if (isIPv6(address)) return `${ipv6Groups(address).slice(0, 4).join(":")}::/64`;
  return address;
}

function unmapped(address: string): string {
  return address.toLowerCase().startsWith("::ffff:") ? address.slice(7) : address;
}

/** The eight groups of an IPv6 address, lower case, without leading zeros (a zone id dropped). */
function ipv6Groups(address: string): string[] {
  const bare = address.split("%")[0]!;
  const [head = "", tail = ""] = bare.split("::");
  const left = head === "" ? [] : head.split(":");
  const right = tail === "" ? [] : tail.split(":");
  const groups = bare.includes("::") ? [...left, ...Array(8 - left.length - right.length).fill("0"), ...right] : left;
  return groups.map((g) => g.replace(/^0+(?=.)/, "").toLowerCase());
}
