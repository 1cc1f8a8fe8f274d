package countygen

import (
	"strconv"
	"strings"

	fieldsyncv1 "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// surnames are weighted for a Han, Miao and Yi county of southern Yunnan: the
// national commonest (王 李 张 刘 陈 杨 黄 赵 吴 周) with the Miao 陶 熊 项 侯 and the
// Yi 普 白 毕 施 more frequent than nationally.
var surnames = []string{
	"杨", "李", "王", "张", "陈", "刘", "罗", "陶", "熊", "马",
	"黄", "周", "赵", "吴", "侯", "项", "普", "白", "龙", "何",
	"朱", "胡", "孙", "徐", "高", "郭", "田", "许", "施", "毕",
	"段", "沈", "古", "韩", "邓", "曾", "唐", "苏", "杜", "钱",
}

var surnameWeights = []float64{
	12, 11, 10, 8, 6, 5, 5, 4, 3, 3,
	3, 3, 3, 3, 2, 2, 2, 2, 2, 2,
	2, 2, 1, 1, 1, 1, 1, 1, 1, 1,
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
}

// givenChars are the characters of given names by generation (born before
// 1975, 1975–2004, from 2005) and sex.
var givenChars = [3][2][]string{
	{
		splitChars("正国文光明学家开有兴发福贵才富忠德永荣成金顺朝世元春应绍自华林清云平保"),
		splitChars("秀英兰芬珍凤花桂香琼梅翠仙玉芝菊美莲妹春会存粉"),
	},
	{
		splitChars("建军伟强勇海涛斌波志明华林杰磊刚云鹏亮超飞俊龙文平忠宏"),
		splitChars("丽艳红燕娟敏静霞萍琴芳玲丹慧婷雪梅琳秀英美玉"),
	},
	{
		splitChars("浩宇轩子涵睿博俊杰泽熙晨铭辰锦文航然一诚奕"),
		splitChars("欣怡梓萱雨诗琪可馨涵悦思佳艺紫彤若汐语桐"),
	},
}

// generationChars are the characters a family's sons may share as the first
// character of their given names (字辈).
var generationChars = splitChars("正国家文学开志永德光明绍世兴朝应天")

func splitChars(s string) []string { return strings.Split(s, "") }

// generation returns the given-name generation index of a birth year.
func generation(year int) int {
	switch {
	case year < 1975:
		return 0
	case year < 2005:
		return 1
	}
	return 2
}

// givenName draws a one- or two-character given name; shared, when not empty,
// is the generation character (字辈) siblings have in common.
func givenName(x *rng, sex fieldsyncv1.Sex, year int, shared string) string {
	pool := givenChars[generation(year)][sexIndex(sex)]
	if shared != "" {
		return shared + pick(x, pool)
	}
	if x.chance(0.2) {
		return pick(x, pool)
	}
	return pick(x, pool) + pick(x, pool)
}

func sexIndex(s fieldsyncv1.Sex) int {
	if s == fieldsyncv1.Sex_SEX_FEMALE {
		return 1
	}
	return 0
}

// surname draws a surname with the regional weights.
func surname(x *rng) string { return surnames[x.weighted(surnameWeights)] }

// fullName draws a surname and a given name.
func fullName(x *rng, sex fieldsyncv1.Sex, year int) string {
	return surname(x) + givenName(x, sex, year, "")
}

// Place names are composed of a first part (Han and Yi/Miao place words) and a
// second part (landform words), e.g. 新寨, 白沙坪, 者黑冲.
var (
	placeFirst = splitWords("新 老 大 小 上 下 中 白 黑 石 竹 松 梨 桃 龙 马 牛 羊 水 沙 岩 " +
		"白沙 龙潭 阿 者 倮 补 戈 那 猛 咪 苗 平 油 茶 花 青 红 黄 金 银 凤 鸡 木 草 麻 栗 " +
		"瓦 铁 河 田 杉 柏 槽 湾")
	placeSecond = splitWords("寨 坪 冲 箐 沟 塘 坝 湾 山 河 厂 脚 田 坡 头 边 岭 洞 林 地 棚 铺 " +
		"街 庄 坡头 箐口 河边 山脚 梁子 垭口")
)

func splitWords(s string) []string { return strings.Fields(s) }

// placeNames draws unique place names for a county.
type placeNames struct {
	x    *rng
	used map[string]bool
}

// next returns a place name not given before, with suffix ("镇", "乡", "村").
// Once the compositions run short it appends a distinguishing 东/西/南/北/上/下.
func (p *placeNames) next(suffix string) string {
	for tries := 0; ; tries++ {
		name := pick(p.x, placeFirst) + pick(p.x, placeSecond)
		if tries > 50 {
			name += pick(p.x, splitChars("东西南北上下新老"))
		}
		if tries > 500 {
			name += pick(p.x, placeSecond) // ever more specific, always terminates
		}
		if !p.used[name] {
			p.used[name] = true
			return name + suffix
		}
	}
}

// Chinese numerals for village groups (村民小组).
var groupNumerals = splitChars("一二三四五六七八九十")

// groupName returns the name of village group n, from 1: 一组 … 十组, 十一组 …;
// from 100 on in Arabic digits.
func groupName(n int) string {
	if n >= 100 {
		return strconv.Itoa(n) + "组"
	}
	tens, ones := n/10, n%10
	s := ""
	if tens > 1 {
		s += groupNumerals[tens-1]
	}
	if tens > 0 {
		s += "十"
	}
	if ones > 0 {
		s += groupNumerals[ones-1]
	}
	return s + "组"
}
