import { startChromiumHost } from "./hosts/chromium.ts";
import { defineHostSuite } from "./suite.ts";

defineHostSuite("chromium", startChromiumHost);
