import { startNodeHost } from "./hosts/node.ts";
import { defineHostSuite } from "./suite.ts";

defineHostSuite("node", startNodeHost);
