import { startWorkerdHost } from "./hosts/workerd.ts";
import { defineHostSuite } from "./suite.ts";

defineHostSuite("workerd", startWorkerdHost);
