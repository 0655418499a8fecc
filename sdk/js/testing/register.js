// `node --import <this file> --test`: plugin tests import "omnicore" and "omnicore/testing".
import { register } from "node:module";

register("./hooks.js", import.meta.url);
